"""Tenant data on an S3 remote (a real S3-compatible server, moto, on a local port): a changed
``stores.dvc_remote`` takes effect without re-init, a fresh clone pulls the data and checks out an
old version, and a wrong bucket, missing credentials or a missing plugin is one line and exit 2,
tried once, with the previous data still current."""
import subprocess
import sys

import boto3
import pytest

from tailor import cli
from tests.conftest import edit_params, synthetic_tenant
from tests.e2e.test_loop import write_csv
from tests.servers import S3_ENV, s3_server
from tests.governance import share_signing_key
from workspace import versioning
from workspace.create import init_workspace
from workspace.paths import Workspace


def s3_keys(endpoint, bucket="tailor"):
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in S3_ENV.items():
            mp.setenv(key, value)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no metadata-service probes when credentials are missing
        with s3_server(tmp_path_factory.mktemp("moto")) as endpoint:
            yield endpoint


@pytest.fixture(scope="module")
def team(s3, tmp_path_factory):
    """A workspace created with the default local remote, then moved to S3 by editing params.yaml."""
    root = tmp_path_factory.mktemp("s3ws") / "ws"
    inbox = tmp_path_factory.mktemp("inbox")
    init_workspace(root)
    edit_params(root, "stores", dvc_remote="s3://tailor/dvc", dvc_endpoint_url=s3)  # no `tailor init` after this
    v1 = write_csv(inbox / "acme-v1.csv", *synthetic_tenant(["animal", "food"], 6, seed=1))
    v2 = write_csv(inbox / "acme-v2.csv", *synthetic_tenant(["animal", "food"], 6, seed=2))
    for path in (v1, v2):
        assert cli.main(["-w", str(root), "ingest", "acme", str(path)]) == 0
    return {"root": root, "inbox": inbox}


def test_a_changed_remote_setting_is_used_without_reinit(team, s3):
    ws = Workspace(team["root"])
    history = versioning.history(ws, "acme")
    assert len(history) == 2
    keys = s3_keys(s3)
    for version in history:  # both versions were pushed to the bucket, under DVC's md5 layout
        digest = version.md5.removeprefix("md5:")
        assert f"dvc/files/md5/{digest[:2]}/{digest[2:]}" in keys
    committed = subprocess.run(["git", "-C", str(ws.root), "show", "HEAD:.dvc/config"], capture_output=True,
                               text=True, check=True).stdout
    assert "s3://tailor/dvc" in committed, "the new remote is committed, so clones pull from it"
    assert not any(ws.dvc_remote_dir.iterdir()), "nothing went to the old local remote"


def test_a_fresh_clone_pulls_and_checks_out_an_old_version(team, tmp_path):
    src = Workspace(team["root"])
    old, new = versioning.history(src, "acme")[1], versioning.history(src, "acme")[0]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(src.root), str(clone)], check=True)
    share_signing_key(src.root, clone)
    assert cli.main(["init", str(clone)]) == 0
    pulled = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    ws = Workspace(clone)
    assert versioning.verified_version(ws, "acme").md5 == new.md5
    assert cli.main(["-w", str(clone), "data", "checkout", "acme", old.md5[:12]]) == 0
    assert versioning.verified_version(ws, "acme").md5 == old.md5  # fetched from S3: never in this clone's cache


def _missing_credentials(mp, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        mp.delenv(key, raising=False)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    mp.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))


def _missing_plugin(mp, tmp_path):
    mp.setitem(sys.modules, "dvc_s3", None)  # `import dvc_s3` fails as if dvc-s3 were not installed


@pytest.mark.parametrize("bucket, environment, message", [
    ("no-such-bucket", None, "does not exist"),
    ("tailor", _missing_credentials, "no credentials"),
    ("tailor", _missing_plugin, "needs a plugin"),
])
def test_remote_mistakes_are_one_line_exit_2_never_retried(team, s3, tmp_path, capfd, monkeypatch,
                                                           bucket, environment, message):
    from s3fs import S3FileSystem

    root = team["root"]
    ws = Workspace(root)
    before = versioning.current_version(ws, "acme")
    edit_params(root, "stores", dvc_remote=f"s3://{bucket}/dvc", dvc_endpoint_url=s3)
    S3FileSystem.clear_instance_cache()  # a cached filesystem would keep earlier credentials
    if environment:
        environment(monkeypatch, tmp_path)
    pushes = []
    real_push = versioning._push
    monkeypatch.setattr(versioning, "_push", lambda repo, f: pushes.append(f) or real_push(repo, f))
    new = write_csv(tmp_path / "acme-v3.csv", *synthetic_tenant(["animal", "food"], 6, seed=3))
    capfd.readouterr()
    try:
        code = cli.main(["-w", str(root), "ingest", "acme", str(new)])
        err = capfd.readouterr().err
    finally:
        edit_params(root, "stores", dvc_remote="s3://tailor/dvc", dvc_endpoint_url=s3)
        S3FileSystem.clear_instance_cache()
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert len(pushes) == 1, "a user's mistake is not retried"
    assert versioning.current_version(ws, "acme") == before
    assert versioning.verified_version(ws, "acme").md5 == before.md5
