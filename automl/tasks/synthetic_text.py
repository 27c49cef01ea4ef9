"""``synthetic-text``: the embedded default corpus -- procedural text with local and long-range structure.

Every sequence is ``[CLS] body [SEP]`` padded with [PAD]. The body is a walk of a small stochastic
grammar (a proposed choice in the spirit of Dyck-language/ListOps benchmarks; PAPERS.md fixes no corpus):

- *words* follow a sparse first-order Markov chain (each word has a few likely successors), carried
  across brackets: local structure that n-gram/convolution layers capture;
- *brackets* of ``bracket_types`` kinds nest up to ``max_depth`` deep around runs of words; a closer's
  kind is that of its (possibly distant) opener: long-range structure that attention captures;
- one *quote pair* ``<< ... >>`` (a bracket kind of its own) per sequence, placed at two top-level word
  positions at least ``min_gap`` apart: it must open before it closes.

Masked-LM runs on ``corpus``/``corpus_val`` (all well-formed). A test split held out of every search
(``n_test`` labelled sequences and ``n_corpus_test`` masked-LM ones, 1000 each by default, 0 for none)
is drawn from seed streams of its own, so the other splits are what they were before it existed; a
test sequence that equals any train, validation or corpus sequence is drawn again. The classification task is *quote
orientation*: in half of the labelled sequences (label 1) the quote pair is well-formed
``<< ... >>``; in the other half (label 0) it is reversed ``>> ... <<``. Both classes hold exactly the
same tokens, so a bag of words is at chance; the label is the order of two tokens ``min_gap`` or more
apart -- long-range and order-dependent. Label 1 <=> the whole sequence is correctly nested.
(Choice: harder labels -- matched vs. two swapped closers, enclosing kind of a marker, depth -- were
tried first; a 2-layer BERT stayed at chance on them within 300 training steps.)

Everything is drawn from ``seed`` with NumPy, the language itself (the Markov chain) included, so a
seed is a dataset; generation is vectorised over sequences (about 0.1 s at default sizes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.text import TextData, TextTask, TextTaskInfo

#: bump when the generator changes what a seed produces (part of the fingerprint)
GENERATOR_VERSION = 1

PAD, CLS, SEP, MASK = 0, 1, 2, 3
FIRST_BRACKET = 4
#: successor probabilities of the word Markov chain, most to least likely (a choice)
SUCCESSOR_PROBS = (0.55, 0.25, 0.12, 0.08)


@dataclass(frozen=True)
class Grammar:
    """Token layout and walk parameters of one synthetic language.

    Ids: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK]; then opener/closer of each bracket kind
    (``4 + 2k``, ``5 + 2k``), the quote pair last among them (kind ``bracket_types``); then the words.
    """

    bracket_types: int
    words: int
    max_depth: int
    p_open: float
    p_close: float

    @property
    def quote(self) -> int:
        """The kind index of the quote pair."""
        return self.bracket_types

    @property
    def first_word(self) -> int:
        return FIRST_BRACKET + 2 * (self.bracket_types + 1)

    @property
    def vocab_size(self) -> int:
        return self.first_word + self.words

    def opener(self, kind: int) -> int:
        return FIRST_BRACKET + 2 * kind

    def closer(self, kind: int) -> int:
        return FIRST_BRACKET + 2 * kind + 1

    def is_bracket(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= FIRST_BRACKET) & (ids < self.first_word)


@tasks.register("synthetic-text")
class SyntheticTextTask(TextTask):
    """Options (defaults): ``seed`` (0), ``max_len`` (64), ``min_len`` (max_len // 2: shortest body),
    ``words`` (48), ``bracket_types`` (4), ``max_depth`` (3), ``p_open`` (0.15), ``p_close`` (0.15),
    ``min_gap`` (max_len // 4: least distance of the quote pair), ``n_corpus`` (8000),
    ``n_corpus_val`` (1000), ``n_train`` (4000), ``n_val`` (1000), ``n_test`` (1000: labelled test
    sequences, held out of every search; 0 for none), ``n_corpus_test`` (1000: held-out masked-LM
    sequences of the test split; 0 for none)."""

    def __init__(self, seed: int = 0, max_len: int = 64, min_len: int | None = None, words: int = 48,
                 bracket_types: int = 4, max_depth: int = 3, p_open: float = 0.15, p_close: float = 0.15,
                 min_gap: int | None = None, n_corpus: int = 8000, n_corpus_val: int = 1000,
                 n_train: int = 4000, n_val: int = 1000, n_test: int = 1000, n_corpus_test: int = 1000,
                 **unknown: Any) -> None:
        super().__init__(**unknown)  # unknown options -> ConfigError
        self.seed = _int("seed", seed, 0)
        self.max_len = _int("max_len", max_len, 8)
        self.min_len = _int("min_len", self.max_len // 2 if min_len is None else min_len, 4)
        if self.min_len > self.max_len - 2:
            raise ConfigError(f"synthetic-text: min_len must be at most max_len - 2 = {self.max_len - 2}, "
                              f"got {self.min_len}", field="min_len")
        self.min_gap = _int("min_gap", self.max_len // 4 if min_gap is None else min_gap, 1)
        if self.min_gap > self.min_len // 2:
            raise ConfigError(f"synthetic-text: min_gap must be at most min_len // 2 = {self.min_len // 2}, "
                              f"got {self.min_gap}", field="min_gap")
        self.grammar = Grammar(
            bracket_types=_int("bracket_types", bracket_types, 1),
            words=_int("words", words, len(SUCCESSOR_PROBS)),
            max_depth=_int("max_depth", max_depth, 1),
            p_open=_prob("p_open", p_open),
            p_close=_prob("p_close", p_close),
        )
        if self.grammar.p_open + self.grammar.p_close > 1.0:
            raise ConfigError(f"synthetic-text: p_open + p_close must be at most 1, got {p_open} + {p_close}",
                              field="p_close")
        if self.grammar.vocab_size > 512:
            raise ConfigError(f"synthetic-text: vocabulary of {self.grammar.vocab_size} ids exceeds 512; "
                              "use fewer words or bracket_types", field="words")
        self.n_corpus = _int("n_corpus", n_corpus, 1)
        self.n_corpus_val = _int("n_corpus_val", n_corpus_val, 1)
        self.n_train = _int("n_train", n_train, 2)
        self.n_val = _int("n_val", n_val, 2)
        self.n_test = _int("n_test", n_test, 0)
        if self.n_test == 1:
            raise ConfigError("synthetic-text: n_test must be 0 (no test split) or an integer >= 2 (both labels), "
                              "got 1", field="n_test")
        self.n_corpus_test = _int("n_corpus_test", n_corpus_test, 0)
        self._data: TextData | None = None

    @property
    def info(self) -> TextTaskInfo:
        return TextTaskInfo(input_shape=(self.max_len,), num_classes=2, vocab_size=self.grammar.vocab_size,
                            max_len=self.max_len, pad_id=PAD, mask_id=MASK, cls_id=CLS, sep_id=SEP)

    def options(self) -> dict[str, object]:
        """Every option, defaults filled in (what the data is a function of)."""
        g = self.grammar
        return {"seed": self.seed, "max_len": self.max_len, "min_len": self.min_len, "words": g.words,
                "bracket_types": g.bracket_types, "max_depth": g.max_depth, "p_open": g.p_open,
                "p_close": g.p_close, "min_gap": self.min_gap, "n_corpus": self.n_corpus,
                "n_corpus_val": self.n_corpus_val, "n_train": self.n_train, "n_val": self.n_val,
                "n_test": self.n_test, "n_corpus_test": self.n_corpus_test}

    def fingerprint(self) -> str:
        payload = json.dumps({"task": "synthetic-text", "version": GENERATOR_VERSION, **self.options()},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def load(self) -> TextData:
        if self._data is None:
            self._data = self._generate()
        return self._data

    def is_matched(self, ids: torch.Tensor) -> torch.Tensor:
        """Per row of ``ids``: whether all its brackets are correctly nested (what label 1 means)."""
        return torch.tensor([_matched(row, self.grammar) for row in ids.tolist()], dtype=torch.bool)

    def _generate(self) -> TextData:
        # a child of a SeedSequence depends on its index alone: the test streams (4, 5) leave 0-3 as they were
        language, corpus_seed, corpus_val_seed, labelled_seed, test_seed, corpus_test_seed = \
            np.random.SeedSequence(self.seed).spawn(6)
        successors = _markov_chain(np.random.default_rng(language), self.grammar.words)
        corpus = self._sequences(np.random.default_rng(corpus_seed), successors, np.ones(self.n_corpus, bool))
        corpus_val = self._sequences(np.random.default_rng(corpus_val_seed), successors,
                                     np.ones(self.n_corpus_val, bool))
        rng = np.random.default_rng(labelled_seed)
        y = _balanced(rng, self.n_train + self.n_val)
        ids = self._sequences(rng, successors, y.astype(bool))
        t = torch.from_numpy
        data = TextData(corpus=t(corpus), corpus_val=t(corpus_val), train_ids=t(ids[:self.n_train]),
                        train_y=t(y[:self.n_train]), val_ids=t(ids[self.n_train:]), val_y=t(y[self.n_train:]))
        seen = {row.tobytes() for part in (corpus, corpus_val, ids) for row in part}
        test: dict[str, torch.Tensor] = {}
        if self.n_test:
            rng = np.random.default_rng(test_seed)
            test_y = _balanced(rng, self.n_test)
            test.update(test_ids=t(self._unseen(rng, successors, test_y.astype(bool), seen, "n_test")),
                        test_y=t(test_y))
        if self.n_corpus_test:
            test["corpus_test"] = t(self._unseen(np.random.default_rng(corpus_test_seed), successors,
                                                 np.ones(self.n_corpus_test, bool), seen, "n_corpus_test"))
        return dataclasses.replace(data, **test)

    def _unseen(self, rng: np.random.Generator, successors: np.ndarray, forward: np.ndarray, seen: set[bytes],
                option: str) -> np.ndarray:
        """Like :meth:`_sequences`, each row drawn again while it equals a row of ``seen`` (the splits a
        search sees): a test split shares no sequence with them."""
        out = self._sequences(rng, successors, forward)
        for _ in range(100):
            repeat = np.array([row.tobytes() in seen for row in out], dtype=bool)
            if not repeat.any():
                return out
            out[repeat] = self._sequences(rng, successors, forward[repeat])
        raise ConfigError(f"synthetic-text: cannot draw {len(out)} test sequences unlike the train, validation and "
                          f"corpus ones: the language is too small (lower {option}, or raise max_len or words)",
                          field=option)

    def _sequences(self, rng: np.random.Generator, successors: np.ndarray, forward: np.ndarray) -> np.ndarray:
        """One sequence per entry of ``forward``, with its quote pair in order where True, else reversed.

        Walks without two top-level words ``min_gap`` apart are redrawn (a few percent at defaults).
        """
        n = len(forward)
        out = np.empty((n, self.max_len), dtype=np.int64)
        todo = np.arange(n)
        while len(todo):
            walks = self._walks(rng, successors, len(todo))
            placed, ok = self._place_quotes(rng, walks, forward[todo])
            out[todo[ok]] = placed[ok]
            todo = todo[~ok]
        return out

    def _place_quotes(self, rng: np.random.Generator, walks: np.ndarray,
                      forward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The quote pair written over two top-level words ``min_gap`` or more apart; and which rows had room."""
        g = self.grammar
        bracket = g.is_bracket(walks)
        opens = bracket & ((walks - FIRST_BRACKET) % 2 == 0)
        closes = bracket & ((walks - FIRST_BRACKET) % 2 == 1)
        depth = np.cumsum(opens, 1) - np.cumsum(closes, 1) + closes  # brackets count as inside their group
        top = (walks >= g.first_word) & (depth == 0)
        rows = np.arange(len(walks))
        a = np.argmax(np.where(top, rng.random(walks.shape), -1.0), 1)
        positions = np.arange(walks.shape[1])
        far = top & (np.abs(positions[None, :] - a[:, None]) >= self.min_gap)
        b = np.argmax(np.where(far, rng.random(walks.shape), -1.0), 1)
        ok = top[rows, a] & far[rows, b]
        first, last = np.minimum(a, b), np.maximum(a, b)
        out = walks.copy()
        out[rows, first] = np.where(forward, g.opener(g.quote), g.closer(g.quote))
        out[rows, last] = np.where(forward, g.closer(g.quote), g.opener(g.quote))
        return out, ok

    def _walks(self, rng: np.random.Generator, successors: np.ndarray, n: int) -> np.ndarray:
        """``n`` well-nested walks ``[CLS] body [SEP] [PAD]...`` (no quote pair yet), (n, max_len) int64."""
        g = self.grammar
        lengths = rng.integers(self.min_len, self.max_len - 1, size=n)  # body length, <= max_len - 2
        out = np.full((n, self.max_len), PAD, dtype=np.int64)
        out[:, 0] = CLS
        stack = np.zeros((n, g.max_depth), dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        word = rng.integers(0, g.words, size=n)  # the chain's state, carried across brackets
        last_open = np.zeros(n, dtype=bool)
        rows = np.arange(n)
        cumulative = np.cumsum(SUCCESSOR_PROBS)
        for t in range(self.max_len - 2):
            remaining = lengths - t  # body positions left, this one included
            live = remaining > 0
            must_close = live & (depth > 0) & (depth >= remaining)
            # an opener needs room for one word and every closer; no empty groups
            can_open = live & ~must_close & (depth < g.max_depth) & (depth + 3 <= remaining)
            can_close = live & ~must_close & (depth > 0) & ~last_open
            u = rng.random(n)
            do_open = can_open & (u < g.p_open)
            do_close = must_close | (can_close & ~do_open & (u >= g.p_open) & (u < g.p_open + g.p_close))
            do_word = live & ~do_open & ~do_close
            kinds = rng.integers(0, g.bracket_types, size=n)
            step = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
            word = np.where(do_word, successors[word, np.minimum(step, len(SUCCESSOR_PROBS) - 1)], word)
            token = np.where(do_word, g.first_word + word, PAD)
            top = stack[rows, np.maximum(depth - 1, 0)]  # closers pop and emit the kind on top
            token = np.where(do_close, FIRST_BRACKET + 2 * top + 1, token)
            token = np.where(do_open, FIRST_BRACKET + 2 * kinds, token)
            stack[rows[do_open], depth[do_open]] = kinds[do_open]
            depth = depth + do_open - do_close
            last_open = do_open
            out[:, t + 1] = np.where(live, token, PAD)
        out[rows, lengths + 1] = SEP
        return out


def _balanced(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` labels, a seeded half (rounded up) of them 1."""
    y = np.zeros(n, dtype=np.int64)
    y[rng.permutation(n)[: (n + 1) // 2]] = 1
    return y


def _markov_chain(rng: np.random.Generator, words: int) -> np.ndarray:
    """(words, len(SUCCESSOR_PROBS)) successor table: distinct successors per word, most likely first."""
    return np.stack([rng.choice(words, size=len(SUCCESSOR_PROBS), replace=False) for _ in range(words)])


def _matched(row: list[int], g: Grammar) -> bool:
    stack: list[int] = []
    for token in row:
        if FIRST_BRACKET <= token < g.first_word:
            if (token - FIRST_BRACKET) % 2 == 0:
                stack.append(token + 1)
            elif not stack or stack.pop() != token:
                return False
    return not stack


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"synthetic-text: {name} must be an integer >= {minimum}, got {value!r}", field=name)
    return int(value)


def _prob(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"synthetic-text: {name} must be a number in [0, 1], got {value!r}", field=name)
    return float(value)
