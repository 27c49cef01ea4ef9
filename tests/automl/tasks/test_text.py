"""Text tasks: the synthetic corpus (determinism, layout, labels that need order), BERT masking, GLUE TSVs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.errors import ConfigError
from automl.tasks.base import tasks
from automl.tasks.glue import GlueTask
from automl.tasks.synthetic_text import SyntheticTextTask
from automl.tasks.text import IGNORE_INDEX, TextTask, TextTaskInfo, mask_tokens

SMALL = dict(n_corpus=600, n_corpus_val=100, n_train=800, n_val=200)


@pytest.fixture(scope="module")
def synthetic() -> SyntheticTextTask:
    return SyntheticTextTask(**SMALL)


# ---------------------------------------------------------------- synthetic-text

def test_registered_under_entry_point_names():
    assert tasks.get("synthetic-text") is SyntheticTextTask
    assert tasks.get("glue") is GlueTask
    assert issubclass(SyntheticTextTask, TextTask) and issubclass(GlueTask, TextTask)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = SyntheticTextTask(seed=3, **SMALL), SyntheticTextTask(seed=3, **SMALL), SyntheticTextTask(seed=4, **SMALL)
    da, db, dc = a.load(), b.load(), c.load()
    for field in ("corpus", "corpus_val", "train_ids", "train_y", "val_ids", "val_y"):
        assert torch.equal(getattr(da, field), getattr(db, field)), field
    assert not torch.equal(da.corpus, dc.corpus)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert SyntheticTextTask(seed=3, **{**SMALL, "max_depth": 2}).fingerprint() != a.fingerprint()
    assert a.load() is da  # cached within the instance


def test_shapes_and_special_tokens(synthetic):
    info, data = synthetic.info, synthetic.load()
    assert isinstance(info, TextTaskInfo) and info.input_shape == (64,) == (info.max_len,)
    assert info.num_classes == 2 and info.vocab_size <= 512
    expected_rows = {"corpus": 600, "corpus_val": 100, "train_ids": 800, "val_ids": 200}
    for field, rows in expected_rows.items():
        ids = getattr(data, field)
        assert ids.dtype == torch.long and ids.shape == (rows, 64), field
        assert (ids[:, 0] == info.cls_id).all()
        assert ((ids == info.sep_id).sum(1) == 1).all()
        assert ((ids >= 0) & (ids < info.vocab_size)).all()
        assert not (ids == info.mask_id).any()
        # padding only after [SEP], and nowhere else
        sep_at = (ids == info.sep_id).float().argmax(1)
        after = torch.arange(64)[None, :] > sep_at[:, None]
        assert torch.equal(ids == info.pad_id, after)
        assert (sep_at >= 1 + synthetic.min_len).all()
    assert data.train_y.shape == (800,) and data.val_y.shape == (200,) and data.train_y.dtype == torch.long


def test_corpus_is_well_nested_and_has_local_and_long_range_structure(synthetic):
    data, g = synthetic.load(), synthetic.grammar
    assert synthetic.is_matched(data.corpus).all() and synthetic.is_matched(data.corpus_val).all()
    corpus = data.corpus
    # long range: exactly one quote pair per sequence, at least min_gap apart
    opens = (corpus == g.opener(g.quote)).float()
    closes = (corpus == g.closer(g.quote)).float()
    assert (opens.sum(1) == 1).all() and (closes.sum(1) == 1).all()
    assert (closes.argmax(1) - opens.argmax(1) >= synthetic.min_gap).all()
    # nested brackets occur
    bracket = (corpus >= g.opener(0)) & (corpus < g.first_word) & (corpus != g.opener(g.quote)) \
        & (corpus != g.closer(g.quote))
    assert bracket.sum(1).float().mean() > 4
    # local: a word's successor is one of four (Markov chain), far from the 48 of unrelated words
    words = corpus >= g.first_word
    pairs = words[:, :-1] & words[:, 1:]
    successors: dict[int, set[int]] = {}
    for a, b in zip(corpus[:, :-1][pairs].tolist(), corpus[:, 1:][pairs].tolist()):
        successors.setdefault(a, set()).add(b)
    assert max(len(s) for s in successors.values()) <= 4


def test_labels_are_balanced_and_mean_correct_nesting(synthetic):
    data = synthetic.load()
    for ids, y in ((data.train_ids, data.train_y), (data.val_ids, data.val_y)):
        assert abs(y.float().mean().item() - 0.5) < 0.06
        assert torch.equal(synthetic.is_matched(ids).long(), y)


def test_label_needs_order_not_bag_of_words(synthetic):
    data, g = synthetic.load(), synthetic.grammar
    ids, y = data.train_ids, data.train_y
    # the classes differ only in the order of the quote pair: swapping its two tokens flips every label
    swapped = ids.clone()
    swapped[ids == g.opener(g.quote)] = g.closer(g.quote)
    swapped[ids == g.closer(g.quote)] = g.opener(g.quote)
    assert torch.equal(synthetic.is_matched(swapped).long(), 1 - y)
    assert torch.equal(torch.sort(swapped, 1).values, torch.sort(ids, 1).values)  # same bag of words
    # shuffling the tokens within each body breaks most correctly nested sequences
    generator = torch.Generator().manual_seed(0)
    positives = ids[y == 1]
    shuffled = positives.clone()
    for row, source in zip(shuffled, positives):
        body = (source != synthetic.info.pad_id) & (source != synthetic.info.cls_id) & (source != synthetic.info.sep_id)
        index = torch.nonzero(body).flatten()
        row[index] = source[index[torch.randperm(len(index), generator=generator)]]
    assert synthetic.is_matched(shuffled).float().mean() < 0.2


def test_options_are_checked():
    with pytest.raises(ConfigError, match="unknown options"):
        SyntheticTextTask(vocab=3)
    with pytest.raises(ConfigError, match="max_len"):
        SyntheticTextTask(max_len=4)
    with pytest.raises(ConfigError, match="p_open"):
        SyntheticTextTask(p_open=1.5)
    with pytest.raises(ConfigError, match="exceeds 512"):
        SyntheticTextTask(words=600)
    with pytest.raises(ConfigError, match="min_gap"):
        SyntheticTextTask(min_gap=40)
    task = SyntheticTextTask(max_len=32, n_corpus=10, n_corpus_val=10, n_train=10, n_val=10)
    assert task.load().corpus.shape == (10, 32)


# ---------------------------------------------------------------- masking

def test_mask_tokens_statistics_and_specials(synthetic):
    info, ids = synthetic.info, synthetic.load().corpus
    inputs, labels = mask_tokens(ids, info, torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(info.special_ids))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & special).any()
    assert torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.01
    n = chosen.sum().item()
    masked = (inputs[chosen] == info.mask_id).sum().item() / n
    replaced = ((inputs[chosen] != info.mask_id) & (inputs[chosen] != ids[chosen])).sum().item() / n
    assert abs(masked - 0.8) < 0.02 and abs(replaced - 0.1 * (1 - 1 / 58)) < 0.02
    assert not torch.isin(inputs[chosen & (inputs != info.mask_id)], torch.tensor(info.special_ids)).any()
    again = mask_tokens(ids, info, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_mask_tokens_random_replacements_skip_specials_and_cover_the_rest():
    info = TextTaskInfo(input_shape=(8,), num_classes=2, vocab_size=10, max_len=8, pad_id=0, mask_id=7,
                        cls_id=3, sep_id=9)
    ids = torch.full((4000, 8), 5)
    inputs, labels = mask_tokens(ids, info, torch.Generator().manual_seed(1), probability=1.0)
    assert (labels == 5).all()
    drawn = set(inputs[(inputs != info.mask_id)].tolist())
    assert drawn == {1, 2, 4, 5, 6, 8}


# ---------------------------------------------------------------- glue

def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


SENTENCES = ["a fine film", "the plot is dull", "an utterly \"charming\" story", "bad acting , worse script",
             "it 's a masterpiece", "boring and long"]


def _sst2(folder: Path, n: int = 24) -> Path:
    rows = "".join(f"{SENTENCES[i % 6]} {i}\t{i % 2}\n" for i in range(n))
    dev = "".join(f"{SENTENCES[i % 6]}\t{i % 2}\n" for i in range(6))
    return _write(folder, {"train.tsv": "sentence\tlabel\n" + rows, "dev.tsv": "sentence\tlabel\n" + dev})


def test_glue_sst2_single_sentences(tmp_path):
    task = GlueTask(path=str(_sst2(tmp_path / "SST-2")), max_len=16, vocab_size=200, test_fraction=0)
    assert task.name == "sst2"
    info, data = task.info, task.load()
    assert info.num_classes == 2 and info.input_shape == (16,)
    assert data.train_ids.shape == (24, 16) and data.val_ids.shape == (6, 16)
    assert data.train_y.tolist() == [i % 2 for i in range(24)]
    assert (data.train_ids[:, 0] == info.cls_id).all()
    assert ((data.train_ids == info.sep_id).sum(1) == 1).all()
    assert (data.train_ids < info.vocab_size).all()
    assert torch.equal(data.corpus, data.train_ids) and torch.equal(data.corpus_val, data.val_ids)
    again = GlueTask(path=str(tmp_path / "SST-2"), max_len=16, vocab_size=200, test_fraction=0)
    assert torch.equal(again.load().train_ids, data.train_ids) and again.fingerprint() == task.fingerprint()
    masked, labels = mask_tokens(data.corpus, info, torch.Generator().manual_seed(0))
    assert masked.shape == labels.shape == data.corpus.shape


def test_glue_mrpc_pairs_and_fingerprint_follows_contents(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = "".join(f"{i % 2}\t{i}\t{i + 100}\t{SENTENCES[i % 6]}\t{SENTENCES[(i + 1) % 6]}\n" for i in range(10))
    folder = _write(tmp_path / "MRPC", {"train.tsv": header + rows,
                                        "dev.tsv": header + "".join(rows.splitlines(True)[:4])})
    task = GlueTask(path=str(folder), max_len=24, vocab_size=150, test_fraction=0)
    info, data = task.info, task.load()
    assert task.name == "mrpc" and data.train_y.tolist() == [i % 2 for i in range(10)]
    assert ((data.train_ids == info.sep_id).sum(1) == 2).all()  # [CLS] a [SEP] b [SEP]
    assert (data.train_ids[:, 0] == info.cls_id).all()
    before = task.fingerprint()
    (folder / "train.tsv").write_text(header + rows.replace("film", "movie"), encoding="utf-8")
    assert GlueTask(path=str(folder), max_len=24, vocab_size=150, test_fraction=0).fingerprint() != before


def test_glue_cola_has_no_header_and_max_train_subsamples(tmp_path):
    rows = "".join(f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\t{SENTENCES[i % 6]}\n" for i in range(30))
    folder = _write(tmp_path / "CoLA", {"train.tsv": rows, "dev.tsv": "".join(rows.splitlines(True)[:5])})
    task = GlueTask(path=str(folder), max_len=12, vocab_size=120, max_train=10, seed=1, test_fraction=0)
    data = task.load()
    assert task.name == "cola" and data.train_ids.shape == (10, 12) and data.val_y.tolist() == [0, 1, 0, 1, 0]
    assert set(data.train_y.tolist()) <= {0, 1}
    assert torch.equal(GlueTask(path=str(folder), max_len=12, vocab_size=120, max_train=10, seed=1,
                                test_fraction=0).load().train_ids, data.train_ids)


def test_glue_rte_string_labels_and_extra_corpus(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel\n"
    labels = ["entailment", "not_entailment"]
    rows = "".join(f"{i}\t{SENTENCES[i % 6]}\t{SENTENCES[(i + 2) % 6]}\t{labels[i % 2]}\n" for i in range(8))
    folder = _write(tmp_path / "RTE", {"train.tsv": header + rows, "dev.tsv": header + rows})
    corpus = tmp_path / "extra.txt"
    corpus.write_text("one more line\n\nand another\n", encoding="utf-8")
    task = GlueTask(path=str(folder), max_len=20, vocab_size=100, corpus=str(corpus), test_fraction=0)
    data = task.load()
    assert data.train_y.tolist() == [1 - i % 2 for i in range(8)]  # entailment -> 1
    assert data.corpus.shape == (8 + 2, 20)


def test_glue_mnli_reads_dev_matched(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    gold = ["entailment", "neutral", "contradiction"]
    rows = "".join(f"{i}\t1\t1\tfiction\t{SENTENCES[i % 6]}\t{SENTENCES[(i + 1) % 6]}\t{gold[i % 3]}\t{gold[i % 3]}\n"
                   for i in range(9))
    folder = _write(tmp_path / "MNLI", {"train.tsv": header + rows, "dev_matched.tsv": header + rows})
    task = GlueTask(path=str(folder), max_len=20, vocab_size=100, test_fraction=0)  # dev is train: nothing to hold out
    assert task.info.num_classes == 3 and task.load().val_y.tolist() == [i % 3 for i in range(9)]


def test_glue_local_hf_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for s in SENTENCES for w in s.replace('"', " ").split()}) + [str(i) for i in range(24)]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers import processors
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(tmp_path / "tok")
    task = GlueTask(path=str(_sst2(tmp_path / "SST-2")), max_len=16, tokenizer=str(tmp_path / "tok"))
    info, data = task.info, task.load()
    assert (info.pad_id, info.cls_id, info.sep_id, info.mask_id, info.vocab_size) == (0, 2, 3, 4, len(vocab))
    assert (data.train_ids[:, 0] == 2).all() and data.train_ids.shape == (22, 16)  # 2 of 24 held out as test
    assert data.test_ids is not None and data.test_ids.shape == (2, 16) and (data.test_ids[:, 0] == 2).all()


def test_glue_bad_input_names_file_line_and_expectation(tmp_path):
    with pytest.raises(ConfigError, match="'path'"):
        GlueTask()
    with pytest.raises(ConfigError, match="no such folder"):
        GlueTask(path=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="dev.tsv"):
        GlueTask(path=str(_write(tmp_path / "SST-2", {"train.tsv": "sentence\tlabel\nok\t1\n"})))
    with pytest.raises(ConfigError, match="regression"):
        GlueTask(path=str(_write(tmp_path / "STS-B", {})))
    with pytest.raises(ConfigError, match="cannot infer"):
        GlueTask(path=str(_write(tmp_path / "mystery", {})))
    with pytest.raises(ConfigError, match="unknown options"):
        GlueTask(path=str(tmp_path / "SST-2"), colour="red")

    bad_label = _write(tmp_path / "a" / "SST-2", {"train.tsv": "sentence\tlabel\nfine\t1\nmeh\tpositive\n",
                                                 "dev.tsv": "sentence\tlabel\nok\t0\n"})
    with pytest.raises(ConfigError) as err:
        GlueTask(path=str(bad_label)).load()
    assert err.value.source.endswith("train.tsv") and err.value.line == 3
    assert "'positive'" in str(err.value) and "['0', '1']" in str(err.value)

    no_column = _write(tmp_path / "b" / "RTE", {"train.tsv": "index\tsentence1\tlabel\n0\tx\tentailment\n",
                                               "dev.tsv": "index\tsentence1\tsentence2\tlabel\n"})
    with pytest.raises(ConfigError) as err:
        GlueTask(path=str(no_column)).load()
    assert err.value.line == 1 and "sentence2" in str(err.value) and err.value.source.endswith("train.tsv")

    ragged = _write(tmp_path / "c" / "SST-2", {"train.tsv": "sentence\tlabel\nfine\t1\ntoo\tmany\t2\n",
                                              "dev.tsv": "sentence\tlabel\nok\t0\n"})
    with pytest.raises(ConfigError) as err:
        GlueTask(path=str(ragged)).load()
    assert err.value.source.endswith("train.tsv") and err.value.line == 3

    short_cola = _write(tmp_path / "d" / "CoLA", {"train.tsv": "gj04\t1\tgood\n", "dev.tsv": "gj04\t1\tgood\n"})
    with pytest.raises(ConfigError, match="at least 4 tab-separated columns"):
        GlueTask(path=str(short_cola)).load()
