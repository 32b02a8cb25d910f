"""Word splitting, word/sub-token alignment, truncation, BIO decoding and character offsets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from polyhead.modeldir import TaskSpec
from polyhead.modeling.encoder import SentenceEncoder
from polyhead.modeling.multitask import MultiTaskModel
from polyhead.tokens import (
    IGNORE_INDEX,
    align_labels,
    bio_viterbi,
    decode_bio,
    first_subtoken_positions,
    split_words,
    tokenize_words,
    words_from_tokens,
)

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture
def tokenizer(tiny_encoder: SentenceEncoder):
    return tiny_encoder.tokenizer  # the real MiniLM word-piece tokenizer


# ----------------------------------------------------------------------- splitting raw text into words
def test_split_words_punctuation_and_offsets() -> None:
    text = "  Dr. Smith\tvisited   São Paulo (Brazil), didn't he?\n"
    words = split_words(text)
    assert [w.text for w in words] == [
        "Dr", ".", "Smith", "visited", "São", "Paulo", "(", "Brazil", ")", ",", "didn't", "he", "?"
    ]
    assert all(text[w.start : w.end] == w.text for w in words)


def test_split_words_keeps_urls_mentions_and_hyphenated_words_whole() -> None:
    text = "@paul_w loved state-of-the-art #NLP at https://example.com/x?y=1 !"
    assert [w.text for w in split_words(text)] == [
        "@paul_w", "loved", "state-of-the-art", "#NLP", "at", "https://example.com/x?y=1", "!"
    ]


def test_split_words_empty() -> None:
    assert split_words("") == [] and split_words("   \n") == []


def test_words_from_tokens_offsets() -> None:
    text, words = words_from_tokens(["New", "York", "!"])
    assert text == "New York !"
    assert [(w.start, w.end) for w in words] == [(0, 3), (4, 8), (9, 10)]
    assert all(text[w.start : w.end] == w.text for w in words)


# ----------------------------------------------------------------------- alignment
def test_multi_subtoken_words_label_only_the_first(tokenizer) -> None:
    words = ["Ask", "Schwarzenegger", "about", "Tokyo", "."]
    labels = [0, 1, 0, 3, 0]
    (enc,) = tokenize_words(tokenizer, [words], max_length=64)
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["[CLS]", "ask", "schwarz", "##ene", "##gger", "about", "tokyo", ".", "[SEP]"]
    assert enc["word_ids"] == [None, 0, 1, 1, 1, 2, 3, 4, None]
    aligned = align_labels(enc["word_ids"], labels)
    assert aligned == [IGNORE_INDEX, 0, 1, IGNORE_INDEX, IGNORE_INDEX, 0, 3, 0, IGNORE_INDEX]
    assert first_subtoken_positions(enc["word_ids"]) == {0: 1, 1: 2, 2: 5, 3: 6, 4: 7}


def test_punctuation_inside_a_word_splits_into_sub_tokens(tokenizer) -> None:
    words = ["don't", "state-of-the-art", "!"]
    (enc,) = tokenize_words(tokenizer, [words], max_length=64)
    # "don't" -> don ' t; "state-of-the-art" -> 7 pieces; each word still has exactly one labelled token
    aligned = align_labels(enc["word_ids"], [5, 6, 7])
    assert [x for x in aligned if x != IGNORE_INDEX] == [5, 6, 7]
    assert enc["word_ids"].count(1) == 7


def test_word_without_sub_tokens_gets_no_label(tokenizer) -> None:
    (enc,) = tokenize_words(tokenizer, [["hello", "\u200b", "world"]], max_length=64)
    assert enc["word_ids"] == [None, 0, 2, None]
    assert align_labels(enc["word_ids"], [1, 2, 3]) == [IGNORE_INDEX, 1, 3, IGNORE_INDEX]


def test_truncation_drops_words_past_max_length(tokenizer) -> None:
    words = ["alpha", "beta", "gamma", "Schwarzenegger", "delta", "epsilon"]
    (enc,) = tokenize_words(tokenizer, [words], max_length=6)
    assert len(enc["input_ids"]) == 6
    # [CLS] alpha beta gamma schwarz [SEP]: "Schwarzenegger" keeps its first piece, delta/epsilon are gone
    assert enc["word_ids"] == [None, 0, 1, 2, 3, None]
    aligned = align_labels(enc["word_ids"], [0, 1, 2, 3, 4, 5])
    assert aligned == [IGNORE_INDEX, 0, 1, 2, 3, IGNORE_INDEX]
    assert set(first_subtoken_positions(enc["word_ids"])) == {0, 1, 2, 3}


def test_batch_of_word_lists(tokenizer) -> None:
    encs = tokenize_words(tokenizer, [["a"], ["b", "c", "d"], []], max_length=16)
    assert [e["word_ids"] for e in encs] == [[None, 0, None], [None, 0, 1, 2, None], [None, None]]
    assert all(len(e["input_ids"]) == len(e["attention_mask"]) == len(e["word_ids"]) for e in encs)


# ----------------------------------------------------------------------- BIO decoding
@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        ([], []),
        (["O", "O"], []),
        (["B-PER"], [("PER", 0, 0)]),
        (["O", "B-PER", "I-PER"], [("PER", 1, 2)]),  # entity at the very end
        (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),  # B starts a new span
        (["I-PER", "I-PER", "O"], [("PER", 0, 1)]),  # I without B starts a span
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # type change
        (["B-PER", "O", "I-PER"], [("PER", 0, 0), ("PER", 2, 2)]),  # O breaks a span
        (["B-LOC", "I-LOC", "B-PER", "I-PER", "O", "B-LOC"], [("LOC", 0, 1), ("PER", 2, 3), ("LOC", 5, 5)]),
        (["B-MISC-X", "I-MISC-X"], [("MISC-X", 0, 1)]),  # types with dashes
    ],
)
def test_decode_bio(tags: list[str], spans: list[tuple[str, int, int]]) -> None:
    decoded = decode_bio(tags, [1.0] * len(tags))
    assert [(k, a, b) for k, a, b, _ in decoded] == spans


def test_decode_bio_score_is_the_mean_over_words() -> None:
    ((kind, first, last, score),) = decode_bio(["O", "B-PER", "I-PER", "O"], [0.1, 0.9, 0.5, 0.2])
    assert (kind, first, last) == ("PER", 1, 2) and score == pytest.approx(0.7)


def valid_bio(tags: list[str]) -> bool:
    """Every I-X follows a B-X or an I-X."""
    return all(
        not t.startswith("I-") or (i > 0 and tags[i - 1] in ("B-" + t[2:], t)) for i, t in enumerate(tags)
    )


def test_bio_viterbi_never_starts_an_entity_with_i() -> None:
    # argmax per word: I-PER, O, B-LOC, I-PER (an entity starting with I- twice, a type switch)
    probs = np.array(
        [
            [0.30, 0.20, 0.45, 0.03, 0.02],
            [0.90, 0.02, 0.04, 0.02, 0.02],
            [0.10, 0.05, 0.05, 0.70, 0.10],
            [0.30, 0.05, 0.40, 0.05, 0.20],
        ]
    )
    argmax = [TAGS[i] for i in probs.argmax(axis=1)]
    assert argmax == ["I-PER", "O", "B-LOC", "I-PER"] and not valid_bio(argmax)
    tags = [TAGS[i] for i in bio_viterbi(TAGS, np.log(probs))]
    # word 0: B-PER (0.20) loses to O (0.30), I-PER is not allowed; word 3: O (0.30) beats I-LOC (0.20)
    assert tags == ["O", "O", "B-LOC", "O"]


def test_bio_viterbi_keeps_an_entity_whose_i_tag_is_strong() -> None:
    probs = np.array([[0.40, 0.35, 0.05, 0.10, 0.10], [0.05, 0.05, 0.80, 0.05, 0.05]])
    # O then I-PER by argmax; B-PER I-PER (0.35 * 0.80) beats every valid alternative (O O: 0.40 * 0.05)
    assert [TAGS[i] for i in bio_viterbi(TAGS, np.log(probs))] == ["B-PER", "I-PER"]


@pytest.mark.parametrize("seed", range(20))
def test_bio_viterbi_is_the_best_valid_sequence(seed: int) -> None:
    """Against brute force over every tag sequence of three words."""
    rng = np.random.default_rng(seed)
    log_probs = np.log(rng.dirichlet(np.ones(len(TAGS)), size=3))
    best = [TAGS[i] for i in bio_viterbi(TAGS, log_probs)]
    candidates = [list(c) for c in itertools.product(range(len(TAGS)), repeat=3)]
    valid = [c for c in candidates if valid_bio([TAGS[i] for i in c])]
    top = max(valid, key=lambda c: sum(log_probs[w, t] for w, t in enumerate(c)))
    assert valid_bio(best)
    assert best == [TAGS[i] for i in top]


def test_decoded_tags_and_entities_never_start_with_i() -> None:
    """A token head's decode (both backends) tags words with the constrained path, not per-word argmax."""
    from polyhead.tasks.token_classification import decode_tokens

    words = split_words("Paris Hilton went home")
    word_ids = [None, 0, 1, 2, 3, None]  # [CLS] paris hilton went home [SEP]
    probs = np.full((6, len(TAGS)), 0.01)
    probs[1] = [0.30, 0.25, 0.05, 0.05, 0.35]  # argmax I-LOC (an entity starting with I-)
    probs[2] = [0.05, 0.05, 0.80, 0.05, 0.05]  # I-PER: after I-LOC a type switch by argmax
    probs[3] = probs[4] = [0.96, 0.01, 0.01, 0.01, 0.01]
    out = decode_tokens(TAGS, np.log(probs), word_ids, words, max_length=64, text="Paris Hilton went home")
    assert out["tags"] == ["B-PER", "I-PER", "O", "O"]
    assert [(e["text"], e["type"]) for e in out["entities"]] == [("Paris Hilton", "PER")]
    assert out["entities"][0]["score"] == pytest.approx((0.25 / sum(probs[1]) + 0.80 / sum(probs[2])) / 2)


def test_bio_viterbi_empty() -> None:
    assert bio_viterbi(TAGS, np.zeros((0, len(TAGS)))) == []


# ----------------------------------------------------------------------- prediction: offsets and truncation
def rigged_ner_model(encoder: SentenceEncoder, tag_of_word: dict[str, str]) -> MultiTaskModel:
    """A token head whose weights read the input ids: a word's first sub-token decides its tag.

    The transformer is replaced by the identity on one-hot token ids, so predictions are exact and
    the test exercises only alignment, decoding and offsets.
    """
    model = MultiTaskModel(encoder, {"ner": TaskSpec("token_classification", TAGS, dropout=0.0)})
    vocab = encoder.tokenizer.get_vocab()
    rules = {vocab[encoder.tokenizer.tokenize(w)[0]]: TAGS.index(t) for w, t in tag_of_word.items()}

    class Lookup(torch.nn.Module):
        def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
            ids = features["input_ids"]  # (batch, seq_len)
            logits = torch.zeros(*ids.shape, len(TAGS))
            logits[..., 0] = 1.0
            for token_id, tag in rules.items():
                logits[..., tag] += 5.0 * (ids == token_id)
            return logits  # (batch, seq_len, tags)

    model.heads["ner"] = Lookup()
    return model


def test_character_offsets_for_raw_text(tiny_encoder: SentenceEncoder) -> None:
    model = rigged_ner_model(
        tiny_encoder, {"Arnold": "B-PER", "Schwarzenegger": "I-PER", "São": "B-LOC", "Paulo": "I-LOC"}
    )
    text = "Yesterday,  Arnold Schwarzenegger\tflew to São   Paulo (again)."
    (result,) = model.predict([text])
    entities = result["ner"]["entities"]
    # the entity text is the user's own text, spacing kept
    assert [(e["type"], e["text"]) for e in entities] == [
        ("PER", "Arnold Schwarzenegger"),
        ("LOC", "São   Paulo"),
    ]
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"]
    assert [(e["word_start"], e["word_end"]) for e in entities] == [(2, 4), (6, 8)]
    assert result["ner"]["truncated_words"] == 0


def test_pre_tokenised_input_is_accepted(tiny_encoder: SentenceEncoder) -> None:
    model = rigged_ner_model(tiny_encoder, {"Berlin": "B-LOC", "Mary": "B-PER"})
    words = ["Mary", "moved", "to", "Berlin", "."]
    (as_words,) = model.predict([words])
    (as_text,) = model.predict(["Mary moved to Berlin."])
    assert as_words["ner"]["tags"] == as_text["ner"]["tags"] == ["B-PER", "O", "O", "B-LOC", "O"]
    spans = [(e["text"], e["start"], e["end"]) for e in as_words["ner"]["entities"]]
    assert spans == [("Mary", 0, 4), ("Berlin", 14, 20)]  # offsets into " ".join(words)


def test_truncated_words_are_reported(tiny_model_dir) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, max_length=8)
    model = rigged_ner_model(encoder, {"Paris": "B-LOC"})
    text = "Paris one two three four five six seven Paris eight"
    (result,) = model.predict([text])
    ner = result["ner"]
    # [CLS] + 6 words + [SEP] = 8 tokens: the last 4 words are cut
    assert ner["truncated_words"] == 4
    assert len(ner["tags"]) == 10 and ner["tags"][6:] == ["O"] * 4
    assert [e["text"] for e in ner["entities"]] == ["Paris"]  # the second Paris is past the limit


def test_zero_width_word_is_not_truncation(tiny_encoder: SentenceEncoder) -> None:
    model = rigged_ner_model(tiny_encoder, {"Rome": "B-LOC"})
    (result,) = model.predict(["Rome \u200b"])
    assert result["ner"]["tags"] == ["B-LOC", "O"] and result["ner"]["truncated_words"] == 0


# ----------------------------------------------------------------------- real CoNLL data
def read_conll(path, limit: int) -> list[tuple[list[str], list[str]]]:
    sentences, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if words:
                sentences.append((words, tags))
                words, tags = [], []
                if len(sentences) == limit:
                    break
            continue
        word, tag = line.split("\t")[0], line.split("\t")[-1]
        words.append(word)
        tags.append(tag)
    return sentences


@pytest.mark.slow
def test_alignment_on_real_tweets(tokenizer, shared_data) -> None:
    """WNUT-17 tweets (emoji, URLs, odd punctuation): every word that has sub-tokens gets exactly one
    label, on its first sub-token; words the tokenizer drops get none; truncation drops the tail."""
    sentences = read_conll(shared_data / "wnut17" / "train.conll", limit=400)
    assert len(sentences) == 400
    words = [w for w, _ in sentences]
    for max_length in (512, 16):
        encodings = tokenize_words(tokenizer, words, max_length=max_length)
        for (ws, _tags), enc in zip(sentences, encodings, strict=True):
            labels = list(range(len(ws)))
            aligned = align_labels(enc["word_ids"], labels)
            kept = [x for x in aligned if x != IGNORE_INDEX]
            assert kept == sorted(set(kept)), "a word labelled twice or out of order"
            present = set(first_subtoken_positions(enc["word_ids"]))
            assert set(kept) == present
            if len(enc["input_ids"]) < max_length:  # not truncated: only words without sub-tokens are missing
                assert all(tokenizer.tokenize(ws[i]) == [] for i in set(labels) - present)
            else:  # truncated: the kept words are a prefix; only the tail (past the last kept word) is cut
                last = max(present)
                assert all(i in present or tokenizer.tokenize(ws[i]) == [] for i in range(last))
