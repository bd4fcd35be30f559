"""Training on the committed 400-row fixture: learns, is reproducible, writes loadable artifacts."""

import gzip
import json
import os
from dataclasses import replace

import pytest
import torch

from model import glove, train, word_prior

from .conftest import FIXTURE, ROOT, SHIPPED

EPOCHS = 6


def train_in(folder):
    """Train from ``folder`` with a relative ``--out``, so the recorded command is the same."""
    folder.mkdir(exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert train.main(["--data", str(FIXTURE), "--variant", "model-a", "--out", "model-a",
                           "--epochs", str(EPOCHS)]) == 0
    finally:
        os.chdir(cwd)
    return folder / "model-a"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_in(tmp_path_factory.mktemp("trained"))


def test_training_beats_chance_on_held_out_rows(trained):
    metadata = json.loads((trained / "metadata.json").read_text())
    assert metadata["validation"]["rows"] == 40
    assert metadata["validation"]["accuracy"] >= 0.5  # chance is 0.25


def test_metadata_records_what_reproduces_the_model(trained):
    metadata = json.loads((trained / "metadata.json").read_text())
    assert metadata["data"]["rows"] == 400
    assert metadata["data"]["sha256"] == train.read_dataset(FIXTURE).sha256
    assert metadata["hyperparameters"]["epochs"] == EPOCHS
    assert metadata["hyperparameters"]["ngrams"] == train.VARIANTS["model-a"].ngrams
    assert metadata["vocab_size"] == len(json.loads((trained / "vocab.json").read_text())["tokens"])
    assert metadata["torch_version"] == torch.__version__
    assert metadata["labels"] == ["World", "Sports", "Business", "Sci/Tech"]
    assert "--variant model-a" in metadata["command"]
    assert f"--epochs {EPOCHS}" in metadata["command"]


def test_same_data_and_command_give_the_same_bytes(trained, tmp_path):
    again = train_in(tmp_path)
    for name in ("model.pth", "vocab.json", "metadata.json", "MODEL_CARD.md"):
        assert (again / name).read_bytes() == (trained / name).read_bytes(), name


def test_words_training_never_saw_carry_the_word_prior(trained):
    tokens = json.loads((trained / "vocab.json").read_text())["tokens"]
    assert "goalkeeper" not in FIXTURE.read_text().lower()
    state = torch.load(trained / "model.pth", weights_only=True)
    row = state["embedding.weight"][tokens.index("goalkeeper")].float()
    embed_dim = train.VARIANTS["model-a"].embed_dim
    assert state["embedding.weight"].shape[1] == embed_dim + len(train.LABELS)
    assert not row[:embed_dim].any() and row[embed_dim:].abs().sum() > 0
    metadata = json.loads((trained / "metadata.json").read_text())
    minilm, glove_source = metadata["word_prior"]["sources"]
    assert minilm["sha256"] == word_prior.SHA256 and glove_source["sha256"] == glove.SHA256


class FixedTeacher:
    """A teacher whose soft labels are given, for the rows it is given."""

    def __init__(self, rows, soft):
        self.rows, self.soft = rows, soft

    def soft_labels(self, got_rows, num_class, l2):
        assert got_rows == self.rows and num_class == 4 and l2 == 0.01
        return self.soft


def test_training_targets_mix_the_hard_label_with_the_teacher():
    rows = [(0, "a"), (2, "b")]
    teacher = FixedTeacher(rows, torch.tensor([[0.1, 0.2, 0.3, 0.4],
                                               [0.25, 0.25, 0.25, 0.25]]))
    hp = train.VARIANTS["model-a"]
    assert hp.teacher_weight == 0.5
    mixed = train.training_targets(rows, hp, teacher)
    assert torch.allclose(mixed, torch.tensor([[0.55, 0.1, 0.15, 0.2],
                                               [0.125, 0.125, 0.625, 0.125]]))
    hard = train.training_targets(rows, hp.plain(), None)
    assert hard.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


def test_the_teacher_overrules_labels_it_contradicts_above_the_threshold():
    rows = [(0, "a"), (1, "b"), (2, "c")]
    soft = torch.tensor([[0.05, 0.9, 0.03, 0.02],   # another label above 0.8: overruled
                         [0.1, 0.15, 0.7, 0.05],    # another label, but at 0.7: kept
                         [0.0, 0.0, 0.95, 0.05]])   # agrees with its label: kept
    hp = replace(train.VARIANTS["model-a"], teacher_overrule=0.8)
    targets = train.training_targets(rows, hp, FixedTeacher(rows, soft))
    hard = torch.eye(4)[[0, 1, 2]]
    assert torch.equal(targets[0], soft[0])
    assert torch.allclose(targets[1:], 0.5 * hard[1:] + 0.5 * soft[1:])


@pytest.mark.parametrize("changes", [{"teacher_overrule": 1.0}, {"teacher_overrule": 0.0},
                                     {"teacher_overrule": 0.8, "teacher_weight": 0.0}])
def test_teacher_overrule_is_a_probability_and_needs_the_teacher(changes):
    with pytest.raises(ValueError, match="teacher_overrule must be a probability"):
        replace(train.VARIANTS["model-a"], **changes)


def test_weights_are_a_compact_state_dict(trained):
    state = torch.load(trained / "model.pth", weights_only=True)
    assert set(state) == {"embedding.weight", "fc.weight", "fc.bias", "bag_weight"}
    assert state["embedding.weight"].dtype in (torch.float16, torch.float32)
    # model-a pools by learned weights: they moved away from the plain mean's 1, both ways.
    assert state["bag_weight"].min() < 0.9 and state["bag_weight"].max() > 1.1


def test_weighted_bag_needs_the_word_prior():
    with pytest.raises(ValueError, match="weighted_bag needs word_prior"):
        replace(train.VARIANTS["model-a"], word_prior=False)


def test_gzip_input_reads_like_plain_csv(tmp_path):
    packed = tmp_path / "sample.csv.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert train.read_dataset(packed) == train.read_dataset(FIXTURE)


def test_bad_rows_are_reported_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text('"1","title","text"\n"7","title","text"\n')
    with pytest.raises(ValueError, match=r"bad.csv:2: expected 'class \(1-4\)"):
        train.read_dataset(bad)
    assert train.main(["--data", str(bad), "--variant", "model-a", "--out",
                       str(tmp_path / "out")]) == 2
    assert "cannot read --data" in capsys.readouterr().err


def test_all_trains_every_variant_into_model_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "MODEL_DIR", tmp_path)
    assert train.main(["--data", str(FIXTURE), "--all", "--epochs", "1"]) == 0
    for name in SHIPPED:
        metadata = json.loads((tmp_path / name / "metadata.json").read_text())
        assert metadata["variant"] == name
        assert metadata["command"].endswith(f"--variant {name} --out model/{name} --epochs 1")


@pytest.mark.parametrize("argv", [["--all", "--variant", "model-a"], ["--variant", "model-a"],
                                  ["--out", "x"], ["--variant", "model-a", "--out", "x",
                                                   "--epochs", "0"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        train.main(["--data", str(FIXTURE)] + argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_artifacts_record_their_training(name):
    folder = ROOT / "model" / name
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["variant"] == name
    assert metadata["data"]["rows"] == 6581
    assert metadata["hyperparameters"] == train.asdict(train.VARIANTS[name])
    assert f"--variant {name} --out model/{name}" in metadata["command"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert metadata["command"] in card and f"{metadata['validation']['accuracy']:.2%}" in card
    overrule = metadata["hyperparameters"]["teacher_overrule"]
    assert (f"another label more than {overrule:.0%} learn its soft labels alone" in card
            if overrule is not None else "learn its soft labels alone" not in card)
