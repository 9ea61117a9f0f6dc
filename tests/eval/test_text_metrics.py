"""BLEU-4, ROUGE-L and distinct-n against examples computed by hand."""
from __future__ import annotations

import math

import pytest

from eval.text_metrics import corpus_bleu, corpus_rouge_l, distinct_n, lcs_length, rouge_l


def words(text):
    return text.split()


CAT = words("the cat sat on the mat")
CAT_REF = words("the cat is on the mat")
STAIRS = words("go up the stairs and stop")
STAIRS_REFS = [words("go up the stairs then stop"), words("walk up the stairs and stop")]


def test_bleu_clips_each_ngram_by_its_best_reference():
    # p1 = 6/6, p2 = 5/5, p3 = 4/4, p4 = 3/3 with n-grams taken from either reference,
    # although the hypothesis equals neither
    result = corpus_bleu([STAIRS], [STAIRS_REFS])
    assert result["bleu"] == pytest.approx(1.0)
    # "the cat ..." vs "the cat is on the mat": p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3
    single = corpus_bleu([CAT], [[CAT_REF]])
    assert (single["p1"], single["p2"], single["p3"], single["p4"]) == \
        pytest.approx((5 / 6, 3 / 5, 1 / 4, 0.0))
    assert single["bleu"] == 0.0  # no smoothing: no matching 4-gram
    # counts are clipped: "the" counts once against a reference holding it once
    assert corpus_bleu([words("the the the the")], [[words("the cat")]])["p1"] == 0.25


def test_corpus_bleu_sums_counts_over_sentences_with_brevity_penalty():
    both = corpus_bleu([CAT, STAIRS], [[CAT_REF], STAIRS_REFS])
    # p1 = 11/12, p2 = 8/10, p3 = 5/8, p4 = 3/6; c = r = 12, so BP = 1
    expected = (11 / 12 * 8 / 10 * 5 / 8 * 3 / 6) ** 0.25
    assert both["bleu"] == pytest.approx(expected)
    assert both["bp"] == 1.0
    # a short hypothesis: all precisions 1, BP = exp(1 - 6/4)
    short = corpus_bleu([words("go up the stairs")], [[STAIRS]])
    assert short["bleu"] == pytest.approx(math.exp(1 - 6 / 4))
    # the closest reference length counts (the shorter one on a tie)
    tie = corpus_bleu([words("a b c d e")], [[words("a b c d"), words("a b c d e f")]])
    assert tie["ref_len"] == 4.0 and tie["bp"] == 1.0


def test_rouge_l_is_cocos_lcs_f_measure():
    assert lcs_length(words("a b c d"), words("a c b d")) == 3
    assert lcs_length(words("x y"), words("a b")) == 0
    # LCS 4: P = 4/4, R = 4/6, F = (1 + 1.2^2) P R / (R + 1.2^2 P)
    p, r = 1.0, 4 / 6
    expected = (1 + 1.44) * p * r / (r + 1.44 * p)
    assert rouge_l(words("go up the stairs"), [STAIRS]) == pytest.approx(expected)
    # several references: P and R are each the best over them
    refs = [words("go up"), words("go up the stairs and stop")]
    p, r = 1.0, max(2 / 2, 4 / 6)
    assert rouge_l(words("go up the stairs"), refs) == pytest.approx(
        (1 + 1.44) * p * r / (r + 1.44 * p))
    assert rouge_l(STAIRS, [STAIRS]) == pytest.approx(1.0)
    assert rouge_l(words("x y"), [STAIRS]) == 0.0 and rouge_l([], [STAIRS]) == 0.0
    assert corpus_rouge_l([STAIRS, words("x")], [[STAIRS], [STAIRS]]) == pytest.approx(0.5)


def test_distinct_n_counts_unique_ngrams_over_samples():
    samples = [words("go up"), words("go down")]
    assert distinct_n(samples, 1) == (0.75, 4)  # go, up, go, down
    assert distinct_n(samples, 2) == (1.0, 2)
    assert distinct_n([words("go up"), words("go up")], 2) == (0.5, 2)
    assert distinct_n([words("go")], 2) == (0.0, 0)
