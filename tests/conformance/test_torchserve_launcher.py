"""The TorchServe launcher's pure parts: config rewriting, environment, command line, readiness.

The launcher itself runs under .venv-torchserve; `make conformance` exercises it for real.
"""

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localcloud import torchserve

# What sagemaker-pytorch-inference 2.0.25 writes: its default file lacks a final newline, so the
# first generated key is glued to the last default line. The rewrite must leave that untouched.
TOOLKIT_CONFIG = """# Based on https://github.com/pytorch/serve/blob/master/docs/configuration.md
vmargs=-XX:-UseContainerSupport
enable_envvars_config=true
decode_input_request=false
load_models=ALL
disable_token_authorization=true
enable_model_api=truedefault_response_timeout=60
default_workers_per_model=2
inference_address=http://0.0.0.0:8080
management_address=http://0.0.0.0:8080
default_service_handler=/x/handler_service.py:handle
"""
EXTRA = {"metrics_address": 41001, "grpc_inference_port": 41002, "grpc_management_port": 41003}


def test_localize_config_binds_every_listener_to_loopback():
    props = torchserve.read_properties(torchserve.localize_config(TOOLKIT_CONFIG, 8080, EXTRA))
    assert props["inference_address"] == "http://127.0.0.1:8080"
    assert props["management_address"] == "http://127.0.0.1:8080"
    assert props["metrics_address"] == "http://127.0.0.1:41001"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert (props["grpc_inference_port"], props["grpc_management_port"]) == ("41002", "41003")
    assert "0.0.0.0" not in torchserve.localize_config(TOOLKIT_CONFIG, 8080, EXTRA)


def test_localize_config_keeps_the_toolkit_settings_as_written():
    props = torchserve.read_properties(torchserve.localize_config(TOOLKIT_CONFIG, 8080, EXTRA))
    original = torchserve.read_properties(TOOLKIT_CONFIG)
    rewritten = {"inference_address", "management_address"}
    assert {k: v for k, v in props.items() if k in original and k not in rewritten} == {
        k: v for k, v in original.items() if k not in rewritten
    }
    assert props["enable_model_api"] == "truedefault_response_timeout=60"


@pytest.mark.parametrize(
    "config, fragment",
    [
        (
            TOOLKIT_CONFIG.replace("0.0.0.0:8080\nmanagement", "0.0.0.0:9090\nmanagement"),
            "inference_address",
        ),
        (
            TOOLKIT_CONFIG.replace("management_address=http://0.0.0.0:8080\n", ""),
            "management_address=None",
        ),
        (
            TOOLKIT_CONFIG.replace("inference_address=http:", "inference_address=https:"),
            "inference_address",
        ),
    ],
)
def test_localize_config_refuses_addresses_it_does_not_understand(config, fragment):
    with pytest.raises(torchserve.LaunchError, match=fragment):
        torchserve.localize_config(config, 8080, EXTRA)


def test_localize_config_needs_every_extra_port():
    with pytest.raises(torchserve.LaunchError, match="grpc_management_port"):
        torchserve.localize_config(
            TOOLKIT_CONFIG, 8080, {k: v for k, v in EXTRA.items() if k != "grpc_management_port"}
        )


def test_serving_environment_confines_the_server_to_its_run_dir(tmp_path):
    base = {"PATH": "/usr/bin:/bin", "MODEL_MAX_BATCH_SIZE": "64", "SAGEMAKER_BIND_TO_PORT": "1"}
    env = torchserve.serving_environment(base, tmp_path, 8123, 2, Path("/venv/bin"))
    assert env["SAGEMAKER_BASE_DIR"] == str(tmp_path)
    assert env["SAGEMAKER_BIND_TO_PORT"] == "8123"
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"
    assert env["TMPDIR"] == env["TEMP"] == str(tmp_path / "tmp")
    assert env["LOG_LOCATION"] == env["METRICS_LOCATION"] == str(tmp_path / "logs")
    assert env["PATH"].split(os.pathsep) == ["/venv/bin", "/usr/bin", "/bin"]
    assert env["MODEL_MAX_BATCH_SIZE"] == "64"
    assert base["SAGEMAKER_BIND_TO_PORT"] == "1"  # the caller's mapping is not modified


def test_serving_environment_keeps_log_locations_the_caller_chose(tmp_path):
    env = torchserve.serving_environment({"LOG_LOCATION": "/var/log/ts"}, tmp_path, 1, 1, tmp_path)
    assert env["LOG_LOCATION"] == env["METRICS_LOCATION"] == "/var/log/ts"


def test_prepare_run_dir_lays_the_model_out_as_sagemaker_does(tmp_path):
    model = tmp_path / "extracted"
    (model / "code").mkdir(parents=True)
    run_dir = torchserve.prepare_run_dir(model)
    try:
        assert (run_dir / "model").resolve() == model.resolve()
        assert (run_dir / "model" / "code").is_dir()
        assert (run_dir / "tmp").is_dir() and (run_dir / "logs").is_dir()
    finally:
        (run_dir / "model").unlink()
        for sub in ("tmp", "logs"):
            (run_dir / sub).rmdir()
        run_dir.rmdir()


def test_free_loopback_ports_are_distinct_and_bindable():
    ports = torchserve.free_loopback_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p <= 65535 for p in ports)


def test_server_argv_runs_this_file_in_isolated_mode(tmp_path):
    argv = torchserve.server_argv(tmp_path, 9001, Path("/venv/bin/python"))
    assert argv[:3] == ["/venv/bin/python", "-I", str(Path(torchserve.__file__).resolve())]
    assert argv[3:] == ["--model-dir", str(tmp_path), "--port", "9001"]
    assert torchserve.TORCHSERVE_PYTHON.parts[-3:] == (".venv-torchserve", "bin", "python")


def test_launcher_script_needs_nothing_from_the_source_tree(tmp_path):
    # -I: no working directory or PYTHONPATH on sys.path; argument errors come before any import.
    result = subprocess.run(
        torchserve.server_argv(tmp_path, 9001, Path(sys.executable)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no code/inference.py" in result.stderr


class _Invocations(BaseHTTPRequestHandler):
    """Answers POST /invocations with the status the test sets, after checking the request."""

    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = (
            self.path == "/invocations"
            and body == torchserve.READINESS_REQUEST
            and self.headers["Content-Type"] == "application/json"
        )
        self.send_response(self.status if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def invocations_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Invocations)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_invocations_ok_is_true_only_for_a_200(invocations_server, monkeypatch):
    port = invocations_server.server_address[1]
    assert torchserve.invocations_ok(port)
    monkeypatch.setattr(_Invocations, "status", 503)
    assert not torchserve.invocations_ok(port)


def test_invocations_ok_is_false_when_nothing_listens():
    assert not torchserve.invocations_ok(torchserve.free_loopback_ports(1)[0], timeout=0.5)


@pytest.mark.parametrize("value", [None, "", "builtin", " builtin "])
def test_runtime_options_keep_the_builtin_server_by_default(value):
    env = {} if value is None else {"LOCAL_MODEL_SERVER": value}
    assert torchserve.runtime_options(env) == {}


def test_runtime_options_name_the_bad_choice():
    with pytest.raises(torchserve.LaunchError, match="'uvicorn'.*allowed: builtin, torchserve"):
        torchserve.runtime_options({"LOCAL_MODEL_SERVER": "uvicorn"})


def test_runtime_options_for_torchserve(monkeypatch, tmp_path):
    python = tmp_path / "python"
    monkeypatch.setattr(torchserve, "TORCHSERVE_PYTHON", python)
    with pytest.raises(torchserve.LaunchError, match="make conformance"):
        torchserve.runtime_options({"LOCAL_MODEL_SERVER": "torchserve"})
    python.write_text("")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(torchserve.LaunchError, match="Java 17"):
        torchserve.runtime_options({"LOCAL_MODEL_SERVER": "torchserve"})
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    options = torchserve.runtime_options({"LOCAL_MODEL_SERVER": "torchserve"})
    assert options == {
        "server_argv": torchserve.server_argv,
        "ready_probe": torchserve.invocations_ok,
    }
