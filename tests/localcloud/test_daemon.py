import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest

from localcloud import daemon, urls

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cloud_env(tmp_path):
    port = urls.free_port_pair()
    env = dict(os.environ, LOCALCLOUD_HOME=str(tmp_path / "lc"), LOCALCLOUD_PORT=str(port))
    env.pop("AWS_DEFAULT_REGION", None)
    yield env
    subprocess.run([sys.executable, "-m", "localcloud", "down"], env=env, cwd=ROOT, timeout=60)


def _cli(env, *args, timeout=90):
    return subprocess.run(
        [sys.executable, "-m", "localcloud", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _trivial_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(
            "handler.py",
            "def handler(event, context):\n"
            "    return {'statusCode': 200, 'body': event['path']}\n",
        )
    return buf.getvalue()


def test_up_status_down_leave_no_process_behind(cloud_env):
    home = Path(cloud_env["LOCALCLOUD_HOME"])
    port = int(cloud_env["LOCALCLOUD_PORT"])
    assert _cli(cloud_env, "status").returncode == 1

    # two concurrent `up` (as under make -j): one starts it, the other finds it running
    ups = [
        subprocess.Popen(
            [sys.executable, "-m", "localcloud", "up"],
            env=cloud_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [up.communicate(timeout=90) for up in ups]
    assert [up.returncode for up in ups] == [0, 0], outputs
    assert sorted("already running" in out for out, _ in outputs) == [False, True], outputs
    status = _cli(cloud_env, "status")
    assert status.returncode == 0 and f"http://127.0.0.1:{port}" in status.stdout
    daemon_pid = int((home / "localcloud.pid").read_text())

    # `up` for a config of another region refuses: its stacks would deploy where nothing looks
    document = json.loads((ROOT / "config.json").read_text())
    document["project"]["region"] = "eu-west-1"
    other = home.parent / "eu-west-1.json"
    other.write_text(json.dumps(document))
    refused = _cli(cloud_env, "up", "--config", str(other))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "runs for region us-east-1, but the config says eu-west-1" in refused.stderr

    # a Lambda worker is a child process that `down` must stop too
    kw = dict(
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    role = boto3.client("iam", **kw).create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    lam = boto3.client("lambda", **kw)
    fn = lam.create_function(
        FunctionName="trivial",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": _trivial_zip()},
    )
    apigw = boto3.client("apigateway", **kw)
    api = apigw.create_rest_api(name="smoke")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    resource = apigw.create_resource(restApiId=api, parentId=root, pathPart="hello")["id"]
    apigw.put_method(restApiId=api, resourceId=resource, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api,
        resourceId=resource,
        httpMethod="GET",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri="arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        f"{fn['FunctionArn']}/invocations",
    )
    apigw.create_deployment(restApiId=api, stageName="prod")
    url = f"http://127.0.0.1:{port + 1}/restapis/{api}/prod/_user_request_/hello"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"/hello"

    children = [int(pid) for pid in json.loads((home / "children.json").read_text())]
    assert children and all(_alive(pid) for pid in children)
    assert (home / "logs" / "lambda" / "trivial.log").is_file()

    down = _cli(cloud_env, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    deadline = time.time() + 10
    while any(_alive(pid) for pid in [daemon_pid, *children]):
        assert time.time() < deadline, "a process of the local cloud survived `down`"
        time.sleep(0.05)
    assert not (home / "localcloud.pid").exists()
    assert _cli(cloud_env, "status").returncode == 1
    again = _cli(cloud_env, "down")
    assert again.returncode == 0 and "not running" in again.stdout


def test_up_after_an_unclean_stop_says_the_deployment_is_gone(cloud_env):
    home = Path(cloud_env["LOCALCLOUD_HOME"])
    home.mkdir(parents=True)
    gone = subprocess.Popen(["true"])  # a pid that no longer runs, as after kill -9 or a reboot
    gone.wait()
    (home / "daemon.json").write_text(json.dumps({
        "pid": gone.pid, "control_url": "http://x", "dataplane_url": "http://x",
        "region": "us-east-1", "started_at": 0.0,
    }))
    (home / "localcloud.pid").write_text(f"{gone.pid}\n")
    assert not daemon.alive(home)  # its info is left behind, its process is not
    up = _cli(cloud_env, "up")
    assert up.returncode == 0, up.stderr
    assert daemon.alive(home)
    assert "stopped without `make local-down`" in up.stdout
    assert "gone: `make deploy` deploys them again" in up.stdout
    # a clean stop, or a running one, is no news
    assert "previous" not in _cli(cloud_env, "up").stdout
    _cli(cloud_env, "down")
    assert not daemon.alive(home)
    assert "previous" not in _cli(cloud_env, "up").stdout


def test_up_says_when_the_running_one_runs_other_localcloud_code(cloud_env, tmp_path):
    # `git pull` while it runs: it keeps serving the code it started with until `down`
    home = Path(cloud_env["LOCALCLOUD_HOME"])
    assert _cli(cloud_env, "up").returncode == 0
    assert "other localcloud code" not in _cli(cloud_env, "up").stdout
    pulled = tmp_path / "pulled"
    shutil.copytree(
        ROOT / "localcloud", pulled / "localcloud", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(pulled / "localcloud" / "apigateway.py", "a") as source:
        source.write("# changed by the pull\n")
    (pulled / "generator").symlink_to(ROOT / "generator")
    shutil.copy(ROOT / "config.json", pulled)
    up = subprocess.run(
        [sys.executable, "-m", "localcloud", "up"],
        env=cloud_env,
        cwd=pulled,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert up.returncode == 0 and "already running" in up.stdout, up.stderr
    assert "started from other localcloud code than this checkout's" in up.stdout
    assert "`make local-down` then `make deploy`" in up.stdout
    # a daemon from before daemon-code.json existed runs older code too
    (home / "daemon-code.json").unlink()
    assert "other localcloud code" in _cli(cloud_env, "up").stdout


def test_up_refuses_a_busy_port_in_one_line(cloud_env):
    port = int(cloud_env["LOCALCLOUD_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        result = _cli(cloud_env, "up")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert f"port {port + 1}" in result.stderr and "LOCALCLOUD_PORT" in result.stderr


def test_bad_port_is_named(cloud_env):
    result = _cli(dict(cloud_env, LOCALCLOUD_PORT="http"), "up")
    assert result.returncode == 1
    assert "LOCALCLOUD_PORT='http'" in result.stderr


def test_env_prints_exports_for_the_control_plane(cloud_env):
    result = _cli(cloud_env, "env")
    assert result.returncode == 0
    port = cloud_env["LOCALCLOUD_PORT"]
    region = json.loads((ROOT / "config.json").read_text())["project"]["region"] or "us-east-1"
    lines = result.stdout.splitlines()
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in lines
    assert "export AWS_ACCESS_KEY_ID=test" in lines
    assert "export AWS_SECRET_ACCESS_KEY=test" in lines
    assert f"export AWS_DEFAULT_REGION={region}" in lines
    assert not any("SAGEMAKER_RUNTIME" in line for line in lines)


def test_region_comes_from_the_validated_config_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert daemon.region() == "eu-west-3"  # no config.json here: not a project
    document = json.loads((ROOT / "config.json").read_text())
    document["project"]["region"] = "ap-south-1"
    (tmp_path / "config.json").write_text(json.dumps(document))
    assert daemon.region() == "ap-south-1"
    document["project"]["region"] = "eu-central-1"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(document))
    assert daemon.region(other) == "eu-central-1"
    document["project"]["region"] = "Mars Base 1"
    (tmp_path / "config.json").write_text(json.dumps(document))
    with pytest.raises(daemon.LocalCloudError) as raised:
        daemon.region()
    assert str(raised.value) == (
        f'{tmp_path / "config.json"}: project.region: "Mars Base 1" is not allowed; '
        "expected an AWS region name such as us-east-1"
    )
    with pytest.raises(daemon.LocalCloudError, match="missing.json: cannot read"):
        daemon.region(tmp_path / "missing.json")


def test_the_code_digest_reads_the_modules_python_imports(tmp_path):
    """What Python would import: an editor's lock file (Emacs' dangling `.#name.py` symlink) or
    other hidden file neither changes the digest nor stops `up` and the daemon with a traceback;
    a module added or changed does change it."""
    package = tmp_path / "localcloud"
    shutil.copytree(ROOT / "localcloud", package, ignore=shutil.ignore_patterns("__pycache__"))
    assert daemon.code_digest(package) == daemon.code_digest()
    (package / ".#apigateway.py").symlink_to("someone@host.1234:1700000000")
    (package / "._urls.py").write_bytes(b"\0\5\26\7")  # macOS metadata beside a copied file
    assert daemon.code_digest(package) == daemon.code_digest()
    (package / "extra.py").write_text("")
    assert daemon.code_digest(package) != daemon.code_digest()
