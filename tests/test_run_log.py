import io
import struct

from tensorboardX.proto import event_pb2

from mtsac_jax.run_log import BuildProgress, RunLog
from tests.conftest import read_jsonl

TRAIN = {"step": 10, "env_steps": 20, "train/critic_loss": 1.5, "perf/env_steps_per_s": 100.0,
         "perf/updates_per_s": 50.0}
EVAL = {"step": 10, "env_steps": 20, "success": 0.5, "episode_reward": 3.0,
        "tasks": {"reach-v3": {"success": 1.0, "episode_reward": 4.0}, "push-v3": {"success": 0.0, "episode_reward": 2.0}}}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def tensorboard_scalars(folder):
    """(tag, step, value) of every scalar in the event files (TFRecord framing)."""
    scalars = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.append((value.tag, event.step, round(value.simple_value, 6)))
    return scalars


def log_one_interval(workdir, stream, start_step=0):
    log = RunLog(workdir, num_train_steps=100, start_step=start_step, stream=stream)
    log.advance(10)
    log.train(TRAIN)
    log.eval(EVAL)
    log.close()


def test_files_tensorboard_and_plain_console_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    log_one_interval(tmp_path, stream)
    assert read_jsonl(tmp_path / "train.jsonl", drop_perf=False) == [TRAIN]
    assert read_jsonl(tmp_path / "eval.jsonl") == [EVAL]
    output = stream.getvalue()
    assert "step 10/100 | env_steps 20 | critic 1.5 | env-steps/s 100" in output
    assert "reach-v3  success 1.00" in output and "\r" not in output  # no progress bar
    scalars = tensorboard_scalars(tmp_path / "tb")
    for expected in [("train/critic_loss", 10, 1.5), ("perf/updates_per_s", 10, 50.0), ("eval/success", 10, 0.5),
                     ("eval/success/reach-v3", 10, 1.0), ("eval/episode_reward/push-v3", 10, 2.0)]:
        assert expected in scalars


def test_progress_bar_on_a_terminal(tmp_path):
    stream = Terminal()
    log_one_interval(tmp_path, stream)
    output = stream.getvalue()
    assert "\r" in output and "10/100" in output and "step" in output
    assert "env-steps/s=100" in output and "updates/s=50.0" in output and "success=0.50" in output
    assert "step 10/100 | env_steps 20" in output


def build(stream, every_s, quiet=False):
    with BuildProgress("building the train envs", 3, every_s, quiet=quiet, stream=stream) as progress:
        for _ in range(3):
            progress.advance()
    return stream.getvalue()


def test_building_the_envs_shows_a_bar_on_a_terminal_and_plain_lines_only_when_it_lasts():
    on_terminal = build(Terminal(), 60.0)
    assert on_terminal.startswith("\rbuilding the train envs:") and "0/3 [" in on_terminal and "\n" not in on_terminal
    assert build(io.StringIO(), 60.0) == ""  # quicker than a line's interval: nothing
    assert build(io.StringIO(), 1e-9).splitlines() == [f"building the train envs: {done}/3 tasks, 0 s" for done in (1, 2, 3)]
    assert build(io.StringIO(), 0) == build(io.StringIO(), 1e-9, quiet=True) == build(Terminal(), 60.0, quiet=True) == ""


def test_resuming_drops_records_after_the_checkpoint(tmp_path):
    log_one_interval(tmp_path, io.StringIO())
    later = dict(TRAIN, step=30)
    log = RunLog(tmp_path, 100, start_step=10, stream=io.StringIO())
    log.train(later)
    log.close()
    RunLog(tmp_path, 100, start_step=20, stream=io.StringIO()).close()  # a resume from step 20
    assert [r["step"] for r in read_jsonl(tmp_path / "train.jsonl")] == [10]
    assert [r["step"] for r in read_jsonl(tmp_path / "eval.jsonl")] == [10]
