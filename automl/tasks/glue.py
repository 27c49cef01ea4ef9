"""``glue``: a GLUE classification task read from local files in the standard GLUE layout (no download).

``<path>/train.tsv`` and ``<path>/dev.tsv`` (MNLI: ``dev_matched.tsv``) are read with pandas
(``quoting=csv.QUOTE_NONE``, as GLUE's unquoted TSVs need). Sentences become
``[CLS] a [SEP]`` and pairs ``[CLS] a [SEP] b [SEP]``, truncated and padded to ``max_len``.

Tokenizer: a local HuggingFace tokenizer directory (``tokenizer``, loaded with ``local_files_only``),
or else a WordPiece tokenizer (``tokenizers`` library) whose vocabulary is learnt deterministically from
the train split plus the ``corpus`` lines -- a choice that keeps the task offline and its vocabulary small.
Masked-LM data (a choice): ``corpus`` = the encoded train inputs plus the encoded lines of the optional
``corpus`` text file; ``corpus_val`` = the encoded dev inputs (their labels unused).
STS-B (regression) is refused.

Test split: GLUE's test files carry no labels, so a seeded ``test_fraction`` (default 0.1; 0 for none)
of the train rows is held out as the test split, which no search sees (``test_ids``/``test_y``, and
its inputs are ``corpus_test``). Only rows whose input occurs once among the train rows read and not
in the dev file are held out, and after encoding any held-out row whose ids equal a train, corpus or
dev row's goes back to training: no test input is a train or validation input. The trained WordPiece
vocabulary is learnt from the rows left for training (the test rows' text is not seen), and the dev
rows (``max_val``) are drawn as before the test split existed: the validation rows do not depend on
``test_fraction``, but their ids do when the vocabulary is trained (it is learnt from fewer rows).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.text import TextData, TextTask, TextTaskInfo

#: special tokens of the trained WordPiece vocabulary, in id order
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class GlueFormat:
    """Where a GLUE task's text and label live in its TSVs, and what labels mean."""

    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...]  # file label values, in class-id order
    header: bool = True
    dev_file: str = "dev.tsv"


_BINARY = ("0", "1")
_ENTAIL = ("not_entailment", "entailment")
FORMATS: dict[str, GlueFormat] = {
    "cola": GlueFormat(3, None, 1, _BINARY, header=False),
    "sst2": GlueFormat("sentence", None, "label", _BINARY),
    "mrpc": GlueFormat("#1 String", "#2 String", "Quality", _BINARY),
    "qqp": GlueFormat("question1", "question2", "is_duplicate", _BINARY),
    "qnli": GlueFormat("question", "sentence", "label", _ENTAIL),
    "rte": GlueFormat("sentence1", "sentence2", "label", _ENTAIL),
    "wnli": GlueFormat("sentence1", "sentence2", "label", _BINARY),
    "mnli": GlueFormat("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                       dev_file="dev_matched.tsv"),
}
_ALIASES = {"sst": "sst2", "stsb": "stsb", "mnlim": "mnli", "mnlimatched": "mnli"}


@dataclass(frozen=True)
class _Split:
    text_a: list[str]
    text_b: list[str] | None
    y: np.ndarray


@tasks.register("glue")
class GlueTask(TextTask):
    """Options: ``path`` (required: the task folder), ``name`` (cola/sst2/mrpc/qqp/qnli/rte/wnli/mnli;
    default from the folder name), ``max_len`` (128), ``vocab_size`` (8000, trained WordPiece only),
    ``tokenizer`` (a local HuggingFace tokenizer directory), ``max_train`` / ``max_val`` (subsample
    sizes, drawn with ``seed``; ``max_train`` counts the rows read before the test split is held out),
    ``corpus`` (a text file of extra MLM lines), ``lowercase`` (True, trained WordPiece only),
    ``test_fraction`` (0.1: the share of train rows held out as the test split; 0 for none), ``seed`` (0)."""

    def __init__(self, path: str | None = None, name: str | None = None, max_len: int = 128,
                 vocab_size: int = 8000, tokenizer: str | None = None, max_train: int | None = None,
                 max_val: int | None = None, corpus: str | None = None, lowercase: bool = True,
                 test_fraction: float = 0.1, seed: int = 0, **unknown: Any) -> None:
        super().__init__(**unknown)  # unknown options -> ConfigError
        if path is None:
            raise ConfigError("glue: option 'path' (the folder holding train.tsv and dev.tsv) is required",
                              field="path")
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise ConfigError("glue: no such folder (expected a GLUE task folder with train.tsv and dev.tsv)",
                              source=str(self.path), field="path")
        self.name = _task_name(name, self.path)
        self.format = FORMATS[self.name]
        self.max_len = _int("max_len", max_len, 8)
        self.vocab_size_option = _int("vocab_size", vocab_size, len(SPECIALS) + 1)
        self.max_train = None if max_train is None else _int("max_train", max_train, 1)
        self.max_val = None if max_val is None else _int("max_val", max_val, 1)
        self.seed = _int("seed", seed, 0)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0.0 <= test_fraction <= 0.5:
            raise ConfigError(f"glue: test_fraction must be a number in [0, 0.5] (the share of train rows held out "
                              f"as the test split), got {test_fraction!r}", field="test_fraction")
        self.test_fraction = float(test_fraction)
        self.lowercase = bool(lowercase)
        self.tokenizer_path = None if tokenizer is None else Path(tokenizer).expanduser()
        if self.tokenizer_path is not None and not self.tokenizer_path.is_dir():
            raise ConfigError("glue: tokenizer must be a local HuggingFace tokenizer folder",
                              source=str(self.tokenizer_path), field="tokenizer")
        self.corpus_path = None if corpus is None else Path(corpus).expanduser()
        if self.corpus_path is not None and not self.corpus_path.is_file():
            raise ConfigError("glue: corpus must be a text file (one sequence per line)",
                              source=str(self.corpus_path), field="corpus")
        for file in (self.train_file, self.dev_file):
            if not file.is_file():
                raise ConfigError(f"glue ({self.name}): missing file {file.name} in {self.path}",
                                  source=str(file))
        self._hf_tokenizer: Any = None
        self._data: TextData | None = None

    @property
    def train_file(self) -> Path:
        return self.path / "train.tsv"

    @property
    def dev_file(self) -> Path:
        return self.path / self.format.dev_file

    @property
    def info(self) -> TextTaskInfo:
        num_classes = len(self.format.labels)
        if self.tokenizer_path is None:
            return TextTaskInfo(input_shape=(self.max_len,), num_classes=num_classes,
                                vocab_size=self.vocab_size_option, max_len=self.max_len,
                                pad_id=SPECIALS.index("[PAD]"), mask_id=SPECIALS.index("[MASK]"),
                                cls_id=SPECIALS.index("[CLS]"), sep_id=SPECIALS.index("[SEP]"))
        tok = self._pretrained()
        return TextTaskInfo(input_shape=(self.max_len,), num_classes=num_classes, vocab_size=len(tok),
                            max_len=self.max_len, pad_id=tok.pad_token_id, mask_id=tok.mask_token_id,
                            cls_id=tok.cls_token_id, sep_id=tok.sep_token_id)

    def fingerprint(self) -> str:
        """Hash of the options and of the contents of every file read (TSVs, corpus, tokenizer files)."""
        digest = hashlib.sha256()
        options = {"task": "glue", "name": self.name, "max_len": self.max_len, "vocab_size": self.vocab_size_option,
                   "max_train": self.max_train, "max_val": self.max_val, "seed": self.seed,
                   "test_fraction": self.test_fraction,
                   "lowercase": self.lowercase, "tokenizer": self.tokenizer_path is not None,
                   "corpus": self.corpus_path is not None}
        digest.update(json.dumps(options, sort_keys=True).encode())
        files = [self.train_file, self.dev_file]
        if self.corpus_path is not None:
            files.append(self.corpus_path)
        if self.tokenizer_path is not None:
            files.extend(sorted(p for p in self.tokenizer_path.rglob("*") if p.is_file()))
        for file in files:
            digest.update(file.name.encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        return digest.hexdigest()[:16]

    def load(self) -> TextData:
        if self._data is None:
            self._data = self._load()
        return self._data

    def _load(self) -> TextData:
        rng = np.random.default_rng(self.seed)
        rows = _subsample(self._read(self.train_file), self.max_train, rng)
        dev = _subsample(self._read(self.dev_file), self.max_val, rng)  # as before the test split existed
        held = self._held_out(rows, dev)
        train = _pick(rows, np.flatnonzero(~held))
        extra = self._corpus_lines()
        encode = self._encoder(train, extra)
        train_ids = encode(train.text_a, train.text_b)
        val_ids = encode(dev.text_a, dev.text_b)
        corpus = torch.cat([train_ids, encode(extra, None)]) if extra else train_ids
        train_y = torch.tensor(train.y)
        test: dict[str, torch.Tensor] = {}
        if held.any():
            held_rows = _pick(rows, np.flatnonzero(held))
            test_ids, test_y = encode(held_rows.text_a, held_rows.text_b), torch.tensor(held_rows.y)
            # a different text may encode to the same ids (normalisation, truncation): such rows train instead
            seen = {row.tobytes() for part in (corpus, val_ids) for row in part.numpy()}
            clash = torch.tensor([row.tobytes() in seen for row in test_ids.numpy()], dtype=torch.bool)
            if clash.all():
                raise ConfigError(f"glue ({self.name}): test_fraction {self.test_fraction} holds out no row: every "
                                  "candidate encodes like a train or dev row (set test_fraction: 0 for no test split)",
                                  source=str(self.train_file), field="test_fraction")
            train_ids, train_y = torch.cat([train_ids, test_ids[clash]]), torch.cat([train_y, test_y[clash]])
            corpus = torch.cat([corpus, test_ids[clash]])
            test = {"test_ids": test_ids[~clash], "test_y": test_y[~clash], "corpus_test": test_ids[~clash]}
        return TextData(corpus=corpus, corpus_val=val_ids, train_ids=train_ids, train_y=train_y, val_ids=val_ids,
                        val_y=torch.tensor(dev.y), **test)

    def _held_out(self, rows: _Split, dev: _Split) -> np.ndarray:
        """Which of ``rows`` are the test split: a seeded ``test_fraction`` of them (at least one), drawn
        among the rows whose input occurs once in ``rows`` and not in ``dev``."""
        held = np.zeros(len(rows.y), dtype=bool)
        if self.test_fraction == 0:
            return held
        keys = _inputs(rows)
        counts = Counter(keys)
        in_dev = set(_inputs(dev))
        candidates = np.array([i for i, k in enumerate(keys) if counts[k] == 1 and k not in in_dev], dtype=np.int64)
        wanted = max(1, int(round(self.test_fraction * len(keys))))
        if len(keys) - wanted < 1 or not len(candidates):
            raise ConfigError(f"glue ({self.name}): test_fraction {self.test_fraction} of {len(keys)} train rows "
                              f"leaves no test split or no training rows ({len(candidates)} rows have an input "
                              "found nowhere else; set test_fraction: 0 for no test split)",
                              source=str(self.train_file), field="test_fraction")
        rng = np.random.default_rng([self.seed, 1])  # its own stream: the train and dev subsamples stay as they were
        held[rng.permutation(candidates)[:wanted]] = True
        return held

    def _read(self, file: Path) -> _Split:
        """One TSV's texts and class ids; any malformed row is a ConfigError naming file and line."""
        import pandas as pd

        fmt = self.format
        try:
            frame = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE, header=0 if fmt.header else None,
                                dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8")
        except pd.errors.ParserError as exc:
            match = re.search(r"line (\d+)", str(exc))
            raise ConfigError(f"malformed TSV row ({exc}); expected tab-separated columns as in GLUE {self.name}",
                              source=str(file), line=int(match.group(1)) if match else None) from exc
        except pd.errors.EmptyDataError as exc:
            raise ConfigError(f"empty file; expected GLUE {self.name} rows", source=str(file)) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text ({exc})", source=str(file)) from exc
        needed = [c for c in (fmt.text_a, fmt.text_b, fmt.label) if c is not None]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            # without a header the columns are numbered
            expected = (f"at least {max(c for c in needed if isinstance(c, int)) + 1} tab-separated columns "
                        "(no header)" if not fmt.header else f"header columns {needed}")
            found = f"{len(frame.columns)} columns" if not fmt.header else f"header {list(frame.columns)}"
            raise ConfigError(f"GLUE {self.name}: missing column(s) {missing}; expected {expected}, found {found}",
                              source=str(file), line=1)
        if len(frame) == 0:
            raise ConfigError(f"GLUE {self.name}: no data rows", source=str(file))
        first_line = 2 if fmt.header else 1
        ids = {value: i for i, value in enumerate(fmt.labels)}
        raw = frame[fmt.label].str.strip()
        bad = ~raw.isin(list(ids))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ConfigError(f"GLUE {self.name}: label {raw.iloc[row]!r} in column {fmt.label!r}; expected one of "
                              f"{list(fmt.labels)} ({int(bad.sum())} bad row(s) in all)",
                              source=str(file), line=first_line + row)
        y = raw.map(ids).to_numpy(dtype=np.int64)
        text_b = None if fmt.text_b is None else frame[fmt.text_b].tolist()
        return _Split(frame[fmt.text_a].tolist(), text_b, y)

    def _corpus_lines(self) -> list[str]:
        if self.corpus_path is None:
            return []
        try:
            text = self.corpus_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"corpus is not UTF-8 text ({exc})", source=str(self.corpus_path)) from exc
        return [line for line in text.splitlines() if line.strip()]

    def _pretrained(self) -> Any:
        if self._hf_tokenizer is None:
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(self.tokenizer_path), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load a HuggingFace tokenizer from this folder: {exc}",
                                  source=str(self.tokenizer_path), field="tokenizer") from exc
            lacking = [t for t in ("pad", "mask", "cls", "sep") if getattr(tok, f"{t}_token_id") is None]
            if lacking:
                raise ConfigError(f"tokenizer lacks BERT special tokens {lacking} (needs [PAD] [MASK] [CLS] [SEP])",
                                  source=str(self.tokenizer_path), field="tokenizer")
            self._hf_tokenizer = tok
        return self._hf_tokenizer

    def _encoder(self, train: _Split, extra: list[str]) -> Any:
        """``encode(text_a, text_b | None) -> (N, max_len)`` long tensor of padded ids."""
        if self.tokenizer_path is not None:
            tok = self._pretrained()

            def encode_pretrained(a: list[str], b: list[str] | None) -> torch.Tensor:
                out = tok(a, b, truncation=True, max_length=self.max_len, padding="max_length")
                return torch.tensor(out["input_ids"], dtype=torch.long)

            return encode_pretrained
        tok = _train_wordpiece(train.text_a + (train.text_b or []) + extra, self.vocab_size_option,
                               self.max_len, self.lowercase)

        def encode_trained(a: list[str], b: list[str] | None) -> torch.Tensor:
            inputs = list(a) if b is None else list(zip(a, b))
            return torch.tensor([e.ids for e in tok.encode_batch(inputs)], dtype=torch.long)

        return encode_trained


def _train_wordpiece(texts: list[str], vocab_size: int, max_len: int, lowercase: bool) -> Any:
    """A BERT-style WordPiece tokenizer whose vocabulary is learnt from ``texts``, deterministically.

    Choice: ``tokenizers``' WordPieceTrainer breaks ties between equally frequent merges differently
    from run to run (its vocabulary is not a function of the data), so the vocabulary is built here:
    the specials, then the characters (word-initial ``c`` and continuation ``##c``) by frequency -- at
    most half the budget -- then whole words by frequency (ties by spelling). Words outside it are split
    greedily into the longest known pieces by the WordPiece model, as in BERT. Normalisation and
    pre-tokenisation are BERT's (``BertNormalizer``, ``BertPreTokenizer``).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for i, ch in enumerate(word):
            chars[ch if i == 0 else "##" + ch] += count
    budget = vocab_size - len(SPECIALS)
    vocab = list(SPECIALS) + _ranked(chars)[: max(1, budget // 2)]
    known = set(vocab)
    vocab += [w for w in _ranked(words) if w not in known][: vocab_size - len(vocab)]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls, sep = SPECIALS.index("[CLS]"), SPECIALS.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(length=max_len, pad_id=SPECIALS.index("[PAD]"), pad_token="[PAD]")
    return tok


def _ranked(counts: Counter[str]) -> list[str]:
    return sorted(counts, key=lambda t: (-counts[t], t))


def _subsample(split: _Split, limit: int | None, rng: np.random.Generator) -> _Split:
    if limit is None or limit >= len(split.y):
        return split
    return _pick(split, np.sort(rng.permutation(len(split.y))[:limit]))


def _pick(split: _Split, keep: np.ndarray) -> _Split:
    """The rows ``keep`` (indices, in that order) of ``split``."""
    def pick(texts: list[str]) -> list[str]:
        return [texts[int(i)] for i in keep]

    return _Split(pick(split.text_a), None if split.text_b is None else pick(split.text_b), split.y[keep])


def _inputs(split: _Split) -> list[str]:
    """Each row's input as one string (a pair joined by a tab, which GLUE's TSV fields cannot hold)."""
    if split.text_b is None:
        return list(split.text_a)
    return [f"{a}\t{b}" for a, b in zip(split.text_a, split.text_b)]


def _task_name(name: str | None, path: Path) -> str:
    given = name if name is not None else path.name
    key = re.sub(r"[^a-z0-9]", "", given.lower())
    key = _ALIASES.get(key, key)
    if key == "stsb":
        raise ConfigError("glue: STS-B is a regression task; only classification tasks are supported "
                          f"({', '.join(FORMATS)})", source=str(path), field="name")
    if key not in FORMATS:
        how = f"name {name!r}" if name is not None else f"cannot infer the task from folder name {path.name!r}"
        raise ConfigError(f"glue: {how}; expected one of {', '.join(FORMATS)} (set option 'name')",
                          source=str(path), field="name")
    return key


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"glue: {name} must be an integer >= {minimum}, got {value!r}", field=name)
    return int(value)
