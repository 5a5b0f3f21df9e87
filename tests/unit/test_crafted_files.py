"""Crafted files and full disks, on the tiny Llama: what a file holds is
checked against the caps when it is loaded (not first when a job reads it),
and a write that fails is one clear line that leaves nothing behind.

- a task-pairs vector file over the caps (10,000 documents x 21 answers was
  accepted and held the model for an estimated 62 hours);
- a GGUF of values near 3e38 (an infinite norm: every reply came out empty);
- a vector file with layer_norm 1e-300 (a strength of 2.6e301);
- Export and Optimize on a full disk ("unexpected error OSError: [Errno 28]",
  and each Optimize try left a 0-byte journal);
- Save over a file of the same name (it was silently replaced);
- a task vector in the run summary (shown as "Vector #2 ()").
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import safetensors.torch
import torch

from steering import capture_vector, load_vectors, save_vectors
from steering.capture import capture
from steering.errors import VectorFileError
from steering.extract import VectorSource
from steering.gguf import ARCH, KEY_LAYER_COUNT, KEY_MODEL_HINT, read_control_vector
from steering.limits import MAX_ANSWERS_PER_ITEM, MAX_TASK_ITEMS, MAX_TEXT_CHARS
from steering.persist import DataFolder
from ui.gguf_panel import GgufActions
from ui.steering_tab import SteeringActions


def _task_vector(steerer, items):
    source = VectorSource(
        "task_pairs", {"task": "t", "split": "training", "items": items, "doc_keys": []}
    )
    return capture(steerer, source, 1, 1.0)


def _edited(path: Path, edit) -> Path:
    """The vector file at `path` with its metadata changed by `edit(meta)`:
    what someone crafting a file would do (the tensors stay valid)."""
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["steerswarm"])
        keys = handle.keys()  # a safetensors handle is no dict: it has no `in` of its own
        tensors = {key: handle.get_tensor(key) for key in keys}
    edit(meta)
    path.write_bytes(safetensors.torch.save(tensors, metadata={"steerswarm": json.dumps(meta)}))
    return path


ITEM = ["Is this review happy? It was great.", " yes", [" no"]]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda inputs: inputs.update(items=[ITEM] * (MAX_TASK_ITEMS + 1)),
         f"A task vector reads at most {MAX_TASK_ITEMS:,} documents; this one has 1,001"),
        (lambda inputs: inputs.update(items=[[ITEM[0], " yes", [" no"] * MAX_ANSWERS_PER_ITEM]]),
         f"A task item has 17 answers; a task vector reads at most {MAX_ANSWERS_PER_ITEM}"),
        (lambda inputs: inputs.update(items=[["x" * (MAX_TEXT_CHARS + 1), " yes", [" no"]]]),
         "A task item's context is 20,001 characters long; a task vector reads texts of at most"),
    ],
)
def test_a_task_vector_file_over_the_caps_is_refused_when_loaded(
    tiny_session, tmp_path, edit, message
):
    steerer = tiny_session.current().steerer
    mine = capture_vector(steerer, ["I love this day"], 1, 2.0)
    steerer.add(mine)
    task = _task_vector(steerer, [ITEM])
    path = save_vectors(tmp_path / "task.safetensors", [task], steerer.info)
    _edited(path, lambda meta: edit(meta["vectors"][0]["inputs"]))
    with pytest.raises(VectorFileError, match="vector 1 is invalid: " + message[:40]):
        load_vectors(path, steerer.info)
    *_, status = list(SteeringActions(tiny_session, tmp_path).load_vectors(str(path)))[-1]
    assert status.startswith("⚠ Could not load the vectors: task.safetensors: vector 1 is invalid")
    assert steerer.vectors == (mine,)


def test_a_file_whose_prompt_is_too_long_for_this_model_is_refused_when_loaded(
    tiny_session, tmp_path
):
    """Token counts need the model's tokenizer, so they are checked as the
    file is applied (before any vector changes), not by the file reader."""
    steerer = tiny_session.current().steerer
    short = capture_vector(steerer, ["I love this day"], 1, 2.0)
    path = save_vectors(tmp_path / "v.safetensors", [short], steerer.info)
    long_prompt = " ".join(["word"] * 600)  # 600 tokens, few enough characters
    _edited(path, lambda meta: meta["vectors"][0]["inputs"].update(prompts=[long_prompt]))
    load_vectors(path, steerer.info)  # the file itself is well formed
    *_, status = list(SteeringActions(tiny_session, tmp_path).load_vectors(str(path)))[-1]
    # 601 tokens: past the cap of 512, and past this tiny model's context of 128
    assert "A prompt is 601 tokens long, longer than the model's context" in status, status
    assert steerer.vectors == ()
    # the same file as the session to restore: set aside, not applied
    folder = DataFolder(tmp_path / "data")
    folder.session_dir.mkdir(parents=True)
    path.replace(folder.active_file)
    note = folder.restore(steerer)
    assert note.startswith("Could not restore the last session's vectors") and "601 tokens" in note
    assert steerer.vectors == () and not folder.active_file.exists()


def _gguf(path: Path, values: np.ndarray) -> Path:
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_string(KEY_MODEL_HINT, "llama")
    writer.add_int32(KEY_LAYER_COUNT, 1)
    writer.add_tensor("direction.1", values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_of_huge_values_is_refused(tiny_session, tmp_path):
    path = _gguf(tmp_path / "huge.gguf", np.full(32, 3e38, np.float32))
    with pytest.raises(VectorFileError, match=r"direction.1 has norm 1.7e\+39; .* at most 1e\+06"):
        read_control_vector(path)
    *_, status = list(SteeringActions(tiny_session, tmp_path).load_vectors(str(path)))[-1]
    assert "huge.gguf: direction.1 has norm 1.7e+39" in status
    assert tiny_session.current().steerer.vectors == ()
    fine = _gguf(tmp_path / "fine.gguf", np.full(32, 0.5, np.float32))
    assert read_control_vector(fine).directions[1].norm() > 0


def test_a_vector_file_with_a_made_up_layer_norm_is_refused(tiny_steerer, tmp_path):
    vector = capture_vector(tiny_steerer, ["I love this day"], 1, 2.0)
    path = save_vectors(tmp_path / "v.safetensors", [vector], tiny_steerer.info)
    _edited(path, lambda meta: meta["vectors"][0].update(layer_norm=1e-300))
    refused = r"layer norm 1e-300\) would be [0-9.]+e\+299; a strength is at most 1000"
    with pytest.raises(VectorFileError, match=refused):
        load_vectors(path, tiny_steerer.info)


def test_export_on_a_full_disk_says_so_and_leaves_no_file(tiny_session, tmp_path, monkeypatch):
    steerer = tiny_session.current().steerer
    steerer.add(capture_vector(steerer, ["I love this day"], 2, 2.0))
    real = gguf.GGUFWriter.write_tensors_to_file

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    file, _flags, status = list(GgufActions(tiny_session, tmp_path).export("love"))[-1]
    assert status == (
        "⚠ Could not export for llama.cpp: Could not write love.gguf: No space left on "
        "device. Any earlier file there is unchanged. Nothing was changed."
    ), status
    assert list(tmp_path.glob("*love*")) == [] and file == {"__type__": "update"}
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", real)
    *_, status = list(GgufActions(tiny_session, tmp_path).export("love"))[-1]
    assert status.startswith("✓ Exported 1 vector(s)")


def test_a_journal_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    from optimize.errors import JournalWriteError
    from optimize.run import journal as journal_module

    class FullDisk:
        """The os module, with every write refused as on a full disk."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal_module, "os", FullDisk())
    path = tmp_path / "optimization-1.journal.jsonl"
    for _try in range(3):
        with pytest.raises(JournalWriteError, match=r"No space left on device\. The run stopped"):
            journal_module.Journal.start(path, {"model": "tiny"})
        assert not path.exists()  # no 0-byte journal, so no false "interrupted run" either
    assert journal_module.interrupted_runs(tmp_path) == []


def test_save_does_not_replace_a_file_unless_asked(tiny_session, tmp_path):
    steerer = tiny_session.current().steerer
    steerer.add(capture_vector(steerer, ["I love this day"], 1, 2.0))
    actions = SteeringActions(tiny_session, tmp_path)
    _file, status = list(actions.save_vectors("mine"))[-1]
    assert status.startswith("✓ Saved 1 vector(s)")
    before = (tmp_path / "mine.safetensors").read_bytes()
    steerer.add(capture_vector(steerer, ["So calm and quiet"], 2, 1.0))
    _file, status = list(actions.save_vectors("mine"))[-1]
    assert status == (
        "⚠ Could not save the vectors: a file called mine.safetensors is already saved. Tick "
        "**Replace a file of the same name** to replace it, or choose another name. "
        "Nothing was changed."
    )
    assert (tmp_path / "mine.safetensors").read_bytes() == before
    _file, status = list(actions.save_vectors("mine", True))[-1]
    assert status.startswith("✓ Saved 2 vector(s)")
    assert len(load_vectors(tmp_path / "mine.safetensors", steerer.info)) == 2


def test_the_run_summary_names_a_task_vector_by_what_made_it(tiny_steerer):
    from optimize.scoring.placing import VectorRecord, record_of
    from ui import format as fmt

    vector = _task_vector(tiny_steerer, [ITEM, ITEM[:2] + [[" maybe"]]])
    record = record_of(1, vector)
    assert record.describe().startswith("task t: mean of answer pairs of 2")
    assert VectorRecord.from_dict(record.to_dict()) == record  # kept in result files
    prompt_record = record_of(0, capture_vector(tiny_steerer, ["I love this day"], 1, 2.0))
    assert "summary" not in prompt_record.to_dict()  # journals of prompt vectors unchanged
    line = f"**Vector #2** ({fmt.md(record.describe())})"
    assert "()" not in line and "task t" in line


def test_the_direction_limits_hold_for_typed_vectors_too(tiny_steerer):
    from steering.errors import InvalidInputError
    from steering.vector import SteeringVector

    source = VectorSource.from_prompts(["a prompt"])
    with pytest.raises(InvalidInputError, match=r"norm must be at most 1e\+06, got 1\.7e\+39"):
        SteeringVector(layer=1, alpha=1.0, direction=torch.full((32,), 3e38), source=source)
    with pytest.raises(InvalidInputError, match="a strength is at most 1000"):
        SteeringVector(1, 1.0, torch.ones(32), source, layer_norm=1e-300)
