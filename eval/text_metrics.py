"""Text-generation metrics of the goal generator: BLEU-4, ROUGE-L and distinct-n.

Sentences are lists of words (``agent.datasets.vocab.tokenize`` of the text). Definitions
follow the captioning / speaker literature:

* :func:`corpus_bleu` — Papineni et al. (2002): clipped n-gram precisions summed over the
  corpus (each hypothesis's n-gram counts clipped by the maximum count in any of its
  references), geometric mean of p_1..p_N with uniform weights, brevity penalty
  ``exp(1 - r / c)`` when c <= r, with r the sum over hypotheses of the reference length
  closest to the hypothesis length (the shorter on a tie). No smoothing: a corpus without a
  single matching 4-gram scores 0 (as NLTK's ``corpus_bleu`` and ``multi-bleu.perl``).
* :func:`rouge_l` — ROUGE-L of the COCO caption evaluation (``pycocoevalcap``): with several
  references, P = max over references of LCS / len(hypothesis), R = max of LCS / len(ref),
  F = (1 + β²) P R / (R + β² P), β = 1.2; :func:`corpus_rouge_l` averages it over sentences.
* :func:`distinct_n` — Li et al. (2016): distinct n-grams / all n-grams of a set of
  sentences (1.0 = no n-gram repeats across the samples).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Dict, List, Sequence, Tuple

__all__ = ["ngrams", "corpus_bleu", "lcs_length", "rouge_l", "corpus_rouge_l", "distinct_n"]

Sentence = Sequence[str]


def ngrams(words: Sentence, n: int) -> Counter:
    """Counts of the n-grams (tuples) of ``words``."""
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _closest_ref_length(hyp_len: int, refs: Sequence[Sentence]) -> int:
    return min((abs(len(r) - hyp_len), len(r)) for r in refs)[1]


def corpus_bleu(hypotheses: Sequence[Sentence], references: Sequence[Sequence[Sentence]],
                max_n: int = 4) -> Dict[str, float]:
    """Corpus BLEU-``max_n`` -> ``{"bleu", "p1".., "bp", "hyp_len", "ref_len"}``.

    ``references[i]`` is the list of references of ``hypotheses[i]`` (at least one)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    matched = [0] * max_n
    total = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_len += len(hyp)
        ref_len += _closest_ref_length(len(hyp), refs)
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            max_ref: Counter = Counter()
            for ref in refs:
                max_ref |= ngrams(ref, n)  # element-wise maximum
            matched[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            total[n - 1] += max(len(hyp) - n + 1, 0)
    precisions = [m / t if t else 0.0 for m, t in zip(matched, total)]
    if hyp_len == 0:
        bp = 0.0
    else:
        bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    if min(precisions) <= 0.0:
        bleu = 0.0
    else:
        bleu = bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    out = {"bleu": bleu, "bp": bp, "hyp_len": float(hyp_len), "ref_len": float(ref_len)}
    out.update({f"p{n + 1}": p for n, p in enumerate(precisions)})
    return out


def lcs_length(a: Sentence, b: Sentence) -> int:
    """Length of the longest common subsequence of two word lists."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: Sentence, references: Sequence[Sentence], beta: float = 1.2) -> float:
    """ROUGE-L F-measure of one hypothesis against its references (COCO's definition)."""
    if not references:
        raise ValueError("ROUGE-L needs at least one reference")
    if not hypothesis:
        return 0.0
    precision = recall = 0.0
    for ref in references:
        if not ref:
            continue
        lcs = lcs_length(hypothesis, ref)
        precision = max(precision, lcs / len(hypothesis))
        recall = max(recall, lcs / len(ref))
    if precision == 0.0 or recall == 0.0:
        return 0.0
    return (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)


def corpus_rouge_l(hypotheses: Sequence[Sentence], references: Sequence[Sequence[Sentence]]
                   ) -> float:
    """Mean :func:`rouge_l` over hypotheses (0.0 for an empty corpus)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    scores = [rouge_l(h, refs) for h, refs in zip(hypotheses, references)]
    return sum(scores) / len(scores) if scores else 0.0


def distinct_n(sentences: Sequence[Sentence], n: int) -> Tuple[float, int]:
    """(distinct n-grams / all n-grams, number of n-grams) over ``sentences``; (0.0, 0)
    when they hold no n-gram."""
    counts: Counter = Counter()
    for words in sentences:
        counts.update(ngrams(words, n))
    total = sum(counts.values())
    return (len(counts) / total if total else 0.0), total
