"""One `make deploy` or `make teardown` at a time per deployment (workflow/exclusive.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from generator.config import load
from workflow.exclusive import deployment

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def refused(what: str, holder) -> str:
    """The refusal of `make what` while the `make teardown` ``holder`` holds the lock."""
    return (
        rf"make {what}: another make teardown \(pid {holder.pid}, since \d\d:\d\d:\d\d\) is "
        r"changing TextClassification stage Demo on the local cloud: wait for it to end, then "
        rf"run make {what} again"
    )


@pytest.fixture
def env(tmp_path):
    """The environment of a local-target run whose local cloud lives in ``tmp_path``."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "LOCALCLOUD_HOME": str(tmp_path)}


def exclusive(env, what, *command, **kwargs):
    argv = [sys.executable, "-m", "workflow.exclusive", "--what", what, "--", *command]
    return subprocess.Popen(argv, cwd=ROOT, env=env, text=True, **kwargs)


def run_exclusive(env, what, *command):
    started = time.monotonic()
    run = exclusive(env, what, *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = run.communicate(timeout=60)
    return run.returncode, out, err, time.monotonic() - started


@pytest.fixture
def holder(env, tmp_path):
    """A `make teardown` that holds the local deployment's lock until the test ends (or kills
    it: its session is its own)."""
    run = exclusive(env, "teardown", *SLEEPER, start_new_session=True)
    lock = tmp_path / "deployment-TextClassificationDemo.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(lock.read_text())["pid"] == run.pid:
                break
        except (OSError, ValueError):
            pass
        assert run.poll() is None, "the holder ended before it took the lock"
        time.sleep(0.05)
    else:
        pytest.fail("the holder did not take the lock")
    yield run
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def test_a_second_run_is_refused_at_once_naming_the_first(env, holder):
    status, out, err, took = run_exclusive(env, "deploy", "true")
    assert status == 2 and out == ""
    assert re.fullmatch(refused("deploy", holder), err.strip())
    assert took < 10  # no waiting for the holder, which sleeps for a minute


def test_a_lock_whose_holder_died_does_not_block(env, holder, tmp_path):
    os.killpg(holder.pid, signal.SIGKILL)  # no chance to clean up: the kernel frees the lock
    holder.wait()
    status, _, err, _ = run_exclusive(env, "deploy", "true")
    assert status == 0, err
    record = json.loads((tmp_path / "deployment-TextClassificationDemo.lock").read_text())
    assert record["what"] == "deploy" and record["pid"] != holder.pid


@pytest.mark.parametrize("command, status", [
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM),
])
def test_the_run_exits_as_its_command_did(env, command, status):
    assert run_exclusive(env, "deploy", *command)[0] == status


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_the_run_was_started_ignoring_stays_ignored_by_its_command(env, signum):
    """`nohup make deploy &` must survive the terminal closing, and a deploy started in the
    background by a script must survive a Ctrl-C there, as without the lock: the command inherits
    the ignored signal instead of the lock's own handler, which exec resets to the default."""

    def ignore():
        signal.signal(signum, signal.SIG_IGN)

    command = ["sh", "-c", f"kill -{signal.Signals(signum).name[3:]} $$; echo survived"]
    run = exclusive(env, "deploy", *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    preexec_fn=ignore)
    out, err = run.communicate(timeout=60)
    assert (run.returncode, out.strip()) == (0, "survived"), err


@pytest.mark.parametrize("what", ["deploy", "teardown"])
def test_make_deploy_and_teardown_run_under_the_lock(env, holder, what):
    """Refused before anything runs, prerequisites included: nothing is packed, generated or
    started, so nothing the other run reads changes under it."""
    result = subprocess.run(["make", "--no-print-directory", what], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    message, make_line = result.stderr.strip().splitlines()
    assert re.fullmatch(refused(what, holder), message)
    # make[1]: under another make (`make test`)
    assert re.fullmatch(rf"make(\[\d+\])?: \*\*\* \[Makefile:\d+: {what}\] Error 2", make_line)


def test_aws_locks_are_per_region_profile_and_stage_in_the_checkout(monkeypatch, tmp_path):
    config = tmp_path / "aws-config"
    config.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n"
                      "[profile dev]\naws_access_key_id = c\naws_secret_access_key = d\n")
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "dev")

    def lock(region="eu-west-1", stage="Demo"):
        cfg = load(ROOT / "config.json")
        return deployment("aws", replace(cfg, project=replace(cfg.project, region=region,
                                                              stage=stage)))

    found = lock()
    assert found.lock_file == Path(
        "build/deployment-aws-eu-west-1-dev-TextClassificationDemo.lock"
    )
    assert found.description == "TextClassification stage Demo in AWS eu-west-1 (profile dev)"
    others = {lock(stage="Prod").lock_file, lock(region="us-east-1").lock_file}
    monkeypatch.delenv("AWS_PROFILE")
    others.add(lock().lock_file)
    assert found.lock_file not in others and len(others) == 3
