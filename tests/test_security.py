"""What a third party that can write to the server, but does not hold the pool's secret,
can and cannot do; run ids that come from outside; passwords kept off command lines.

The attacks are made as an attacker would make them: entries appended to a real
server's streams, keys written over, a run id of ``..`` in the event log. A *canary*
is a pickle that would create a file if it were ever unpickled: the file must never
appear.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import pathlib
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from conftest import FAST, Pool, worker_env
from helpers import Signals, add, gate, inc
from hypothesis import given
from hypothesis import strategies as st

import dagrt
from dagrt import SignatureError, TaskError, submission
from dagrt import keys as K
from dagrt.distributed import DistributedRuntime
from dagrt.hmacs import mac
from dagrt.keyring import Keyring
from dagrt.metrics import aprune, list_runs
from dagrt.metrics import recorder as rec
from dagrt.metrics.report import write_report
from dagrt.metrics.runs_index import LOG_RUN, log_run_call
from dagrt.objects import HostStore
from dagrt.outcomes import event_tag, exception_of, open_error, seal_error
from dagrt.sealing import cache_place, output_place, seal
from dagrt.serialize import pack
from dagrt.storage import RedisStorage
from dagrt.storage import commands as C
from dagrt.storage.redis import redact
from dagrt.storage.server import free_port
from dagrt.workers.settings import WorkerSettings

SECRET = "the-pool-secret-of-tests"
KEYS = Keyring.of(SECRET)


class Canary:
    """Unpickled, it creates the file ``path`` (and nothing else)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def canary_record(path: Path, run_id: str, **fields: Any) -> dict[str, Any]:
    """An error record as a worker writes one, its exception a canary."""
    return {
        "task": "x",
        "name": "x",
        "exc_type": "ValueError",
        "message": "forged",
        "traceback": "",
        "worker": "attacker",
        "attempt": 1,
        "run_id": run_id,
        "exception": base64.b64encode(pickle.dumps(Canary(path))).decode(),
        **fields,
    }


@pytest.fixture
def signed_pool(pool_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Pool:
    """Two workers and this test's clients holding the pool's secret."""
    pool: Pool = pool_factory(2, env=worker_env(DAGRT_SECRET=SECRET))
    monkeypatch.setenv("DAGRT_SECRET", SECRET)
    return pool


class CustomError(Exception):
    """An exception whose argument is not plain: rebuilt only by unpickling."""

    def __init__(self, payload: dict[str, int]) -> None:
        super().__init__(payload)
        self.payload = payload


@dagrt.task
def raise_custom(x: int) -> int:
    raise CustomError({"x": x})


@dagrt.task
def raise_value(x: int) -> int:
    raise ValueError(f"bad {x}")


# --------------------------------------------------------------------------- forged run events


async def test_forged_events_mid_run_run_no_code_and_end_nothing(
    signed_pool: Pool, signals: Signals, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``failed`` (with a canary exception), ``finished`` and ``cancelled`` appended to a
    running run's events stream, without a tag, with a made-up one, or with the tag of
    another run: each is ignored and logged as forged, the run goes on to its result."""
    canary = tmp_path / "canary"
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        fut = client.submit(add(gate(signals, "held", 2), inc(1)))
        await signals.started("held")
        events = K.RunKeys(fut.run_id).events
        record = canary_record(canary, fut.run_id)
        other = "another-run"
        with caplog.at_level(logging.WARNING, logger="dagrt.outcomes"):
            for fields in (
                {"e": "failed", "t": 0, "err": json.dumps(record)},
                {"e": "failed", "t": 0, "err": "f" * 64 + json.dumps(record)},
                {"e": "failed", "t": 0, "err": seal_error(KEYS, other, record)},
                {"e": "finished"},
                {"e": "finished", "m": "0" * 64},
                {"e": "finished", "m": event_tag(KEYS, other, "finished")},
                {
                    "e": "cancelled",
                    "m": event_tag(Keyring.of("a-guessed-secret-0"), fut.run_id, "cancelled"),
                },
            ):
                await storage.axadd(events, fields)
            await anyio.sleep(0.3)  # (the client reads them while the task is held)
            assert not fut.done()
            await signals.release("held")
            with anyio.fail_after(30):
                assert await fut == 4
    forged = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert len(forged) == 7, forged
    assert not canary.exists()
    await storage.aclose()


async def test_a_real_failure_keeps_its_exception_and_a_forged_one_in_its_place_is_not_read(
    signed_pool: Pool, tmp_path: Path
) -> None:
    """A checked error record gives back the task's own exception (unpickled: any
    type); one overwritten in the run's error key never is, even with the run's tag
    made with another secret."""
    async with dagrt.Client(signed_pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError) as info:
            await client.compute(raise_custom(3))
    assert isinstance(info.value.exception, CustomError)
    assert info.value.exception.payload == {"x": 3}
    canary = tmp_path / "canary"
    stored = seal_error(Keyring.of("not-the-pool-secret"), "r1", canary_record(canary, "r1"))
    assert open_error(KEYS, "r1", stored) is None
    assert open_error(KEYS, "r1", json.dumps(canary_record(canary, "r1"))) is None
    assert not canary.exists()


async def test_without_a_secret_an_exception_is_rebuilt_from_plain_parts_never_unpickled(
    pool: Pool, signals: Signals, tmp_path: Path
) -> None:
    """A pool without a secret can check nothing: an exception of plain arguments comes
    back rebuilt from its type's name (of a module loaded here), any other as its text;
    a forged ``failed`` event ends the run (documented), but its canary never runs."""
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError) as plain:
            await client.compute(raise_value(7))
        assert type(plain.value.exception) is ValueError
        assert str(plain.value.exception) == "bad 7"
        with anyio.fail_after(30), pytest.raises(TaskError) as custom:
            await client.compute(raise_custom(7))
        assert custom.value.exception is None
        assert custom.value.exc_type.endswith("CustomError")
        assert "CustomError" in str(custom.value)
        assert "Remote traceback" in str(custom.value)

        canary = tmp_path / "canary"
        fut = client.submit(gate(signals, "held", 1))
        await signals.started("held")
        record = canary_record(
            canary, fut.run_id, plain=["subprocess", "Popen", ["touch " + str(canary)]]
        )
        storage = RedisStorage(pool.url)
        await storage.axadd(
            K.RunKeys(fut.run_id).events, {"e": "failed", "err": json.dumps(record)}
        )
        with anyio.fail_after(30), pytest.raises(TaskError) as forged:
            await fut
        assert forged.value.exception is None  # (Popen is no exception class: not called)
        await signals.release("held")
        await storage.aclose()
    assert not canary.exists()


def test_rebuilding_takes_only_exception_classes_of_loaded_modules() -> None:
    def record(plain: Any) -> dict[str, Any]:
        return {"task": "t", "plain": plain}

    assert isinstance(exception_of(record(["builtins", "KeyError", ["k"]]), False), KeyError)
    rebuilt = exception_of(record([__name__, "CustomError", [1]]), False)
    assert isinstance(rebuilt, CustomError)
    for plain in (
        ["os", "system", ["touch /tmp/x"]],  # not a class
        ["builtins", "type", ["x", [], {}]],  # not an exception
        ["builtins", "SystemExit", [1]],  # not an Exception
        ["never_imported_module", "Error", []],  # not imported for an unchecked record
        ["builtins", "ValueError", [{"not": "plain"}]],
        "builtins.ValueError",
    ):
        assert exception_of(record(plain), False) is None, plain
    assert "never_imported_module" not in sys.modules


@dagrt.task
def returns_a_gated_graph(signals: Signals) -> Any:
    return gate(signals, "inner", 5)


async def test_a_forged_end_of_a_graph_a_task_returned_does_not_complete_the_task(
    signed_pool: Pool, signals: Signals
) -> None:
    """The sub-run's meta set to finished (or failed, with no error record) and the entry
    that resumes its task: the task stays waiting (the end's tag is not there), and
    completes with the graph's own value once the graph really ends."""
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        fut = client.submit(add(returns_a_gated_graph(signals), 1))
        await signals.started("inner")
        sub = K.RunKeys(K.sub_run_id(fut.run_id, 0))
        for forged in ({"status": "finished"}, {"status": "failed", "failed_task": "0"}):
            await storage.ahset(sub.meta, forged)
            await storage.axadd(K.tasks_stream(), {"r": fut.run_id, "t": 0, "x": "1"})
            await anyio.sleep(0.5)  # (a worker reads the entry at once)
            assert not fut.done()
        await storage.ahset(sub.meta, {"status": "running"})  # (else it stays stopped)
        await signals.release("inner")
        with anyio.fail_after(30):
            assert await fut == 6
    await storage.aclose()


async def test_a_run_stops_only_its_own_graphs(signed_pool: Pool, signals: Signals) -> None:
    """Another run's id added to a run's set of sub-runs: cancelling the run does not
    stop the other one (the client would tag its cancellation)."""
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        other = client.submit(gate(signals, "other", 1))
        victim_of_nothing = client.submit(gate(signals, "mine", 2))
        await signals.started("other")
        await signals.started("mine")
        await storage.apipeline(
            [C.Cmd(("SADD", K.RunKeys(victim_of_nothing.run_id).subs, other.run_id))]
        )
        victim_of_nothing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim_of_nothing
        await signals.release("other")
        with anyio.fail_after(30):
            assert await other == 1
    await storage.aclose()


def test_which_runs_are_sub_runs_of_a_run() -> None:
    run = K.new_run_id()
    long = "a" * 100 + "." + "b" * 27  # (128 characters: its sub-runs are hashed)
    assert K.is_sub_run_of(K.sub_run_id(run, 7), run)
    assert K.is_sub_run_of(K.sub_run_id(long, 7), long)  # (the hashed form)
    for other in (run, K.new_run_id(), run + ".t", run + ".tx", run + ".t7.t1", "x" + run):
        assert not K.is_sub_run_of(other, run), other


@dataclass
class Blob:
    """An argument that does not travel inline: its task's arguments are stored apart."""

    data: bytes


@dagrt.task
def size_of(_: Any, blob: Blob) -> int:
    return len(blob.data)


async def test_arguments_stored_apart_that_were_replaced_are_never_unpickled(
    signed_pool: Pool, signals: Signals, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        fut = client.submit(size_of(gate(signals, "before", 0), Blob(b"x" * 100_000)))
        await signals.started("before")
        [spec] = [k async for k in storage.ascan_iter(f"dagrt:{{{fut.run_id}}}:spec:*")]
        await storage.aset(spec, pickle.dumps(Canary(canary)))
        await signals.release("before")
        with anyio.fail_after(30), pytest.raises(TaskError, match="do not match the digest"):
            await fut
        # the same, untouched, runs
        assert await client.compute(size_of(1, Blob(b"y" * 100_000))) == 100_000
    assert not canary.exists()
    await storage.aclose()


# --------------------------------------------------------------------------- run ids


@pytest.mark.parametrize(
    "run_id",
    ["..", ".", "a..b", ".hidden", "trailing.", "a/b", "a\\b", "a:b", "{a}", "", "a b", "x" * 129],
)
def test_what_is_not_a_run_id(run_id: str) -> None:
    assert not K.valid_run_id(run_id)
    with pytest.raises(ValueError, match="is not a run id"):
        K.RunKeys(run_id)
    with pytest.raises(ValueError, match="is not a run id"):
        K.run_record(run_id)


def test_run_ids_dagrt_makes_are_run_ids() -> None:
    run_id = K.new_run_id()
    assert K.valid_run_id(run_id)
    assert K.valid_run_id(K.sub_run_id(run_id, 3))
    assert K.valid_run_id(K.sub_run_id(K.sub_run_id(run_id, 3), 0))
    assert K.valid_run_id(K.sub_run_id("a" * 91 + "." + "b" * 30, 12345))  # hashed, no ".."


async def test_a_run_id_of_dotdot_in_the_log_names_no_folder_and_no_key(
    redis_url: str, tmp_path: Path
) -> None:
    """A run ``..`` written into the event log (its index and its record, as a third
    party would): ``dagrt runs`` leaves it out, ``dagrt report ..`` refuses it and
    writes nothing, the library refuses it, ``prune`` drops it from the index only."""
    storage = RedisStorage(redis_url)
    await storage.azadd(K.runs_index(), {"..": 1.0})
    await storage.ahset("dagrt:run:..", {"status": "finished", "n_tasks": "1"})
    out = tmp_path / "reports"
    env = {**os.environ, "DAGRT_REDIS_URL": redis_url}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "dagrt", "report", "..", "--out", str(out), "--wait", "0"],
            env=env,
            check=False,
        )
    assert done.returncode == 2
    assert "'..' is not a run id" in done.stderr.decode()
    assert list(tmp_path.iterdir()) == []  # nothing in reports/ nor beside it
    with pytest.raises(ValueError, match="is not a run id"):
        write_report(storage, "..", out)
    assert ".." not in [r.run_id for r in list_runs(storage, 1000)]
    pruned = await aprune(storage, before=2.0)
    assert ".." in pruned.runs
    assert await storage.apipeline([C.Cmd(("ZSCORE", K.runs_index(), ".."))]) == [None]
    assert await storage.ahgetall("dagrt:run:..")  # (a key it does not own: left alone)
    await storage.adelete("dagrt:run:..")
    await storage.aclose()


def test_a_report_folder_that_links_out_of_its_base_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    out.mkdir()
    (out / "run-1").symlink_to(tmp_path)
    storage = dagrt.storage.InMemoryStorage()
    with pytest.raises(ValueError, match="outside"):
        write_report(storage, "run-1", out)


async def test_the_report_escapes_every_value_of_the_log(redis_url: str, tmp_path: Path) -> None:
    """Events of the log are read as written: values a third party wrote (text where a
    number belongs) are shown escaped."""
    storage = RedisStorage(redis_url)
    run_id = K.new_run_id()
    evil = "<script>alert(1)</script>"
    items = [
        rec.task_started(1.0, run_id, evil, 0, evil, evil, evil),
        rec.task_finished(run_id, evil, 0, evil, evil, evil, 1.0, 2.0, 0.5),
        rec.task_failed(3.0, run_id, evil, 1, evil, evil, evil, evil, evil, evil, True),
    ]
    cmd = log_run_call(K.events(), run_id, "attacker", 1, [(len(items), pack(items))], items)
    n_keys = int(cmd.args[2])
    await storage.arun_script(LOG_RUN, cmd.args[3 : 3 + n_keys], cmd.args[3 + n_keys :])
    page = write_report(storage, run_id, tmp_path).read_text()
    assert "<script>alert" not in page.split('<script type="application/json"')[0]
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    # text where a number belongs (summed): a clear error, no page
    bad = [rec.task_finished(run_id, "w", 1, "k", "f", 1, 1.0, 2.0, evil)]
    cmd = log_run_call(K.events(), run_id, "attacker", 2, [(1, pack(bad))], bad)
    await storage.arun_script(LOG_RUN, cmd.args[3 : 3 + n_keys], cmd.args[3 + n_keys :])
    with pytest.raises(ValueError, match="values dagrt does not write"):
        write_report(storage, run_id, tmp_path / "again")
    await storage.aclose()


def test_an_entry_or_an_end_naming_dotdot_touches_no_folder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = HostStore(root)
    (tmp_path / "keep").mkdir()
    assert store.drop_run("..") == 0
    with pytest.raises(ValueError, match="is not a run id"):
        store.path("..", 0)
    assert (tmp_path / "keep").is_dir()


async def test_the_dashboard_refuses_a_run_id_of_dotdot(pool: Pool) -> None:
    port = free_port()
    async with dagrt.Client(pool.url, dashboard=port):
        for path in ("/api/runs/%2E%2E", "/api/runs/..%2Fx", "/api/runs/.hidden/trace.json"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                await anyio.to_thread.run_sync(
                    lambda p=path: urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=10)
                )
            assert refused.value.code in (400, 404), path
            refused.value.close()


# --------------------------------------------------------------------- secrets off command lines


def dagrt_processes() -> list[psutil.Process]:
    """This test's processes and all they started (servers, workers, dashboards)."""
    return psutil.Process().children(recursive=True)


async def test_no_process_shows_a_password_or_the_secret_on_its_command_line(
    signed_pool: Pool,
) -> None:
    """With a client serving the dashboard for a pool with a password and a secret,
    and with a client that starts its own cluster and dashboard: no command line of
    any process holds a password or a secret (``ps`` shows them to every user)."""
    password = signed_pool.server.password
    assert password
    port = free_port()
    async with dagrt.Client(signed_pool.url, dashboard=port) as client:
        assert await client.compute(add(1, 2)) == 3
        async with dagrt.Client(n_workers=1, dashboard=free_port()) as own:
            assert await own.compute(add(2, 2)) == 4
            assert own.cluster is not None
            assert own.cluster.secret is not None
            secrets = [password, SECRET, own.cluster.password, own.cluster.secret.decode()]
            lines = {p.pid: " ".join(p.cmdline()) for p in dagrt_processes()}
    kinds = " ".join(lines.values())
    assert "dagrt dashboard" in kinds
    assert "dagrt worker" in kinds
    assert "-server" in kinds
    for pid, line in lines.items():
        for secret in secrets:
            assert secret not in line, (pid, line)


def test_passwords_are_redacted_wherever_a_url_is_shown() -> None:
    for url, shown in (
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:p@ss:w@h:1/0", "redis://:***@h:1/0"),
        ("redis://h:1/0?password=pw&db=1", "redis://h:1/0?password=***&db=1"),
        ("rediss://h/0?ssl_password=pw", "rediss://h/0?ssl_password=***"),
        ("unix://:pw@/tmp/s.sock", "unix://:***@/tmp/s.sock"),
    ):
        assert redact(url) == shown
        assert "pw" not in repr(RedisStorage(url)), url
    for bad in ("http://:pw@h/0", "redis://:pw@h:notaport/0", "redis://:pw@h/0?ssl_ca_certs=x"):
        with pytest.raises(ValueError) as refused:
            RedisStorage(bad)
        assert "pw" not in str(refused.value), bad
    settings = WorkerSettings(secret=b"s3cr3t-of-sixteen", metrics_url="redis://:pw@h/0")
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in repr(settings.keyring)
    assert ":pw@" not in repr(settings)
    done = subprocess.run(
        [sys.executable, "-m", "dagrt", "runs", "--redis", "redis://:pw@h:99999/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Port out of range" in done.stderr
    assert ":pw@" not in done.stderr


async def test_the_secret_and_the_url_can_come_from_files(
    pool_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DAGRT_SECRET_FILE`` and ``DAGRT_REDIS_URL_FILE`` (Docker and Kubernetes
    secrets) for a worker and a client; a file that cannot be read stops a worker."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    pool: Pool = pool_factory(0)
    url_file = tmp_path / "url"
    url_file.write_text(pool.url)
    env = worker_env(DAGRT_SECRET_FILE=str(secret_file), DAGRT_REDIS_URL_FILE=str(url_file))
    env.pop("DAGRT_SECRET", None)
    env.pop("DAGRT_REDIS_URL", None)
    argv = [sys.executable, "-m", "dagrt", "worker", *FAST]
    worker = await anyio.to_thread.run_sync(
        lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    )
    try:
        assert worker.stdout is not None
        ready = await anyio.to_thread.run_sync(worker.stdout.readline)
        assert ready.startswith("dagrt-worker ready")
        monkeypatch.setenv("DAGRT_SECRET_FILE", str(secret_file))
        monkeypatch.delenv("DAGRT_SECRET", raising=False)
        async with dagrt.Client(pool.url) as client:
            assert client._runtime is not None
            assert client._runtime.secret == KEYS  # type: ignore[attr-defined]
            assert await client.compute(add(1, 2)) == 3
    finally:
        worker.terminate()
        await anyio.to_thread.run_sync(worker.wait, 30)
        if worker.stdout is not None:
            worker.stdout.close()
    env["DAGRT_SECRET_FILE"] = str(tmp_path / "missing")
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "dagrt", "worker"], env=env, check=False
        )
    assert done.returncode == 2
    assert "DAGRT_SECRET_FILE" in done.stderr.decode()
    assert "cannot be read" in done.stderr.decode()


# --------------------------------------------------------------------------- the MAC itself


@given(key=st.binary(max_size=200), parts=st.lists(st.binary(max_size=300), max_size=4))
def test_the_fast_hmac_is_hmac_sha256(key: bytes, parts: list[bytes]) -> None:
    assert mac(key, *parts) == hmac.new(key, b"".join(parts), hashlib.sha256).digest()


# --------------------------------------------------------------------------- keys and records


async def test_a_secret_can_be_changed_without_a_pause(
    pool_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation: the first secret of a keyring signs, all are accepted. Workers that sign
    with the old secret and accept the new one serve clients that already sign with the
    new one, and the other way round; once the old one is dropped, a client that knows
    only the old one is refused."""
    old, new = "the-old-secret-of-tests", "the-new-secret-of-tests"
    pool: Pool = pool_factory(1, env=worker_env(DAGRT_SECRET=f"{old},{new}"))
    for client_keys in (f"{new}\n{old}", old):
        monkeypatch.setenv("DAGRT_SECRET", client_keys)
        async with dagrt.Client(pool.url) as client:
            with anyio.fail_after(30):
                assert await client.compute(add(1, 2)) == 3
            with anyio.fail_after(30), pytest.raises(TaskError) as failed:
                await client.compute(raise_custom(2))
            assert isinstance(failed.value.exception, CustomError)  # (its record checked)
    pool.stop_workers()
    pool.spawn(*FAST, env=worker_env(DAGRT_SECRET=new))
    monkeypatch.setenv("DAGRT_SECRET", old)
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(30), pytest.raises(SignatureError, match="another secret"):
            await client.compute(add(1, 2))


async def test_a_record_copied_from_another_run_or_task_is_refused(signed_pool: Pool) -> None:
    """Records are signed together with their run and their index: run b's root record
    replaced by run a's (the same bytes but for the signature's binding), or run c's
    root record by c's own other record, fails the run with SignatureError."""
    storage = RedisStorage(signed_pool.url)
    runs = [K.new_run_id() for _ in range(3)]
    for run in runs:
        dag = dagrt.DAG(add(inc(1), 2))
        await submission.submit(storage, dag, run, secret=KEYS, stream="test:nobody", ttl=60)
    a, b, c = (K.RunKeys(r) for r in runs)
    root = 0 if (await storage.ahgetall(b.deps)).get(b"0") is None else 1
    other = 1 - root
    [[a_root], [c_other]] = await storage.apipeline(
        [C.hmget(a.tasks, [str(root)]), C.hmget(c.tasks, [str(other)])]
    )
    await storage.ahset(b.tasks, {str(root): a_root})
    await storage.ahset(c.tasks, {str(root): c_other})
    for rk in (b, c):
        await storage.axadd(K.tasks_stream(), {"r": rk.run_id, "t": root})
        with anyio.fail_after(30):
            while True:
                reply = await storage.axread({rk.events: "0-0"}, block=5)
                kinds = [f.get(b"e") for _, f in (reply[0][1] if reply else [])]
                if b"failed" in kinds:
                    break
        stored = await storage.aget(rk.error(root))
        record = open_error(KEYS, rk.run_id, stored)
        assert record is not None
        assert record["exc_type"] == "dagrt.SignatureError"
        assert "another run or task" in record["message"]
    await storage.aclose()


async def test_dagrt_secret_prints_a_new_secret() -> None:
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-m", "dagrt", "secret"], check=False)
    secret = done.stdout.decode().strip()
    assert done.returncode == 0
    assert len(secret) >= 43
    assert Keyring.of(secret) is not None
    with pytest.raises(ValueError, match="16 characters at least"):
        Keyring.of("short")
    with pytest.raises(ValueError, match="16 characters at least"):
        dagrt.Client("redis://localhost/0", secret="short")


REMOTE = "redis://:pw@192.0.2.1:6379/0"  # (TEST-NET-1: an address that is not this machine)


async def test_a_server_not_on_loopback_is_refused_without_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a secret, a client and a worker refuse a server that is not on loopback
    before they connect, unless told the pool is knowingly unauthenticated."""
    monkeypatch.delenv("DAGRT_SECRET", raising=False)
    monkeypatch.delenv("DAGRT_UNAUTHENTICATED", raising=False)
    with pytest.raises(ValueError, match="not on this machine's loopback") as refused:
        async with dagrt.Client(REMOTE):
            pass
    assert ":pw@" not in str(refused.value)
    env = {k: v for k, v in worker_env().items() if not k.startswith("DAGRT_")}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "dagrt", "worker"],
            env={**env, "DAGRT_REDIS_URL": REMOTE},
            check=False,
        )
    assert done.returncode == 2
    assert "not on this machine's loopback" in done.stderr.decode()
    # told so (or with a secret), they try to connect: nothing listens there
    for allowed in (
        DistributedRuntime(REMOTE, unauthenticated=True),
        DistributedRuntime(REMOTE, secret=SECRET),
    ):
        with anyio.fail_after(60), pytest.raises(dagrt.StorageConnectionError):
            async with allowed:
                pass
    # loopback and Unix sockets need no secret (a test pool's server, say)
    assert DistributedRuntime("redis://127.0.0.1:1/0").secret is None


# --------------------------------------------------------------------------- bounded bad input


@pytest.mark.slow
async def test_a_flood_of_junk_entries_leaves_workers_serving(pool_factory: Any) -> None:
    """Thousands of entries no client wrote (missing fields, bad run ids, ``..``, runs
    that do not exist, 1 MB of junk in a field) are dead-lettered and acknowledged;
    the workers keep serving, the dead-letter stream stays capped, and memory stays
    bounded."""
    pool: Pool = pool_factory(2)
    storage = RedisStorage(pool.url)
    junk: list[dict[str, Any]] = []
    for i in range(6000):
        junk.append(
            [
                {"garbage": i},
                {"r": "..", "t": 0},
                {"r": "no-such-run", "t": i},
                {"r": K.new_run_id(), "t": -1},
                {"r": "x" * 300, "t": "nan"},
                {"t": 1},
            ][i % 6]
        )
    junk.append({"r": "big", "t": 0, "pad": b"\0" * (1 << 20)})
    for at in range(0, len(junk), 500):
        await storage.axadd_many(K.tasks_stream(), junk[at : at + 500])
    async with dagrt.Client(pool.url) as client:
        with anyio.fail_after(120):
            assert await client.compute(add(inc(1), inc(2))) == 5
            seen, last = 0, "0-0"  # (the workers read the rest meanwhile)
            while seen < len(junk):
                for _, letters in await storage.axread({K.dead_letter(): last}, block=5):
                    seen, last = seen + len(letters), letters[-1][0]
    assert storage.xpending(K.tasks_stream(), K.TASKS_GROUP)["pending"] == 0
    rss = [psutil.Process(w.pid).memory_info().rss for w in pool.workers]
    assert max(rss) < 600 << 20, rss
    await storage.aclose()


def test_tags_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check of a tag goes through ``hmac.compare_digest`` (timing tests are
    flaky: this proves the constant-time path is the one taken)."""
    from dagrt import hmacs, records

    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    monkeypatch.setattr(hmacs.hmac, "compare_digest", counting)
    stored = records.sign(b"payload", KEYS, "run-1", "0")
    assert records.verify(stored, KEYS, "run-1", "0") == b"payload"
    with pytest.raises(ValueError, match="does not match"):
        records.verify(stored, KEYS, "run-1", "1")
    record = {"task": "t", "message": "m"}
    assert open_error(KEYS, "run-1", seal_error(KEYS, "run-1", record)) == record
    assert len(calls) >= 3


# --------------------------------------------------------------------------- outputs


OTHER_KEYS = Keyring.of("another-secret-altogether")


def forgeries(path: Path, place: bytes, elsewhere: bytes) -> dict[str, bytes]:
    """A canary as an attacker would put it where a value sealed for ``place`` belongs:
    unsealed, sealed with another secret, and (a genuine seal, replayed) sealed for
    ``elsewhere``."""
    payload = pickle.dumps(Canary(path))
    return {
        "unsealed": payload,
        "another secret": bytes(seal(OTHER_KEYS, place, payload)),
        "replayed": bytes(seal(KEYS, elsewhere, payload)),
    }


FORGERIES = ["unsealed", "another secret", "replayed"]


@pytest.fixture
def two_sided_pool(pool_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Pool:
    """A signed pool whose two workers have a resource each (``left``, ``right``): a
    task that needs ``right`` reads what a ``left`` task made from the server."""
    pool: Pool = pool_factory(0)
    for side in ("left", "right"):
        pool.spawn(*FAST, "--resources", f"{side}=1", env=worker_env(DAGRT_SECRET=SECRET))
    monkeypatch.setenv("DAGRT_SECRET", SECRET)
    return pool


async def run_event(storage: RedisStorage, rk: K.RunKeys, kind: bytes) -> None:
    """Block until the run's events stream holds an event of ``kind``."""
    last = "0-0"
    while True:
        reply = await storage.axread({rk.events: last}, block=5_000)
        for entry_id, fields in reply[0][1] if reply else []:
            last = entry_id
            if fields.get(b"e") == kind:
                return


@pytest.mark.parametrize("forgery", [*FORGERIES, "another task"])
async def test_an_output_replaced_mid_run_is_never_unpickled(
    two_sided_pool: Pool, signals: Signals, tmp_path: Path, forgery: str
) -> None:
    """``inc`` runs on the left worker; while a gate holds the run, its output key is
    replaced; ``add`` on the right worker reads it from the server: the task fails
    with IntegrityError naming the key, the run fails at once, nothing is unpickled."""
    canary = tmp_path / "canary"
    storage = RedisStorage(two_sided_pool.url)
    left = {"resources": {"left": 1}}
    async with dagrt.Client(two_sided_pool.url) as client:
        x = inc.options(**left)(1)
        held = gate.options(**left)(signals, "held", 0, x)
        fut = client.submit(add.options(resources={"right": 1})(x, held))
        await signals.started("held")
        rk = K.RunKeys(fut.run_id)
        [key] = [k async for k in storage.ascan_iter(rk.output("*"))]  # (x's: held runs)
        index = int(key.rsplit(":", 1)[1])
        place = output_place(fut.run_id, index)
        elsewhere = output_place(K.new_run_id(), index)
        forged = forgeries(canary, place, elsewhere)
        forged["another task"] = bytes(seal(KEYS, output_place(fut.run_id, index + 1), b"\x80"))
        await storage.aset(key, forged[forgery])
        await signals.release("held")
        with anyio.fail_after(30), pytest.raises(TaskError) as failed:
            await fut
        assert failed.value.exc_type == "dagrt.IntegrityError"
        assert key in str(failed.value)
        # the pool goes on: the same graph, untouched, runs
        with anyio.fail_after(30):
            assert await client.compute(add.options(resources={"right": 1})(inc(1), 0)) == 2
    assert not canary.exists()
    await storage.aclose()


async def test_a_final_output_replaced_before_the_client_reads_it_is_refused(
    signed_pool: Pool, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    storage = RedisStorage(signed_pool.url)
    spec = await submission.submit(storage, dagrt.DAG(inc(1)), K.new_run_id(), secret=KEYS)
    with anyio.fail_after(30):
        await run_event(storage, spec.keys, b"finished")
    key = spec.keys.output(0)
    genuine = await storage.aget(key)
    async with DistributedRuntime(signed_pool.url, secret=KEYS) as runtime:
        assert await runtime.outputs(spec) == [2]
        for forged in forgeries(canary, output_place(spec.run_id, 0), b"o\0x\0000").values():
            await storage.aset(key, forged)
            with pytest.raises(dagrt.IntegrityError, match=key):
                await runtime.outputs(spec)
        await storage.aset(key, genuine)
        assert await runtime.outputs(spec) == [2]
    assert not canary.exists()
    await storage.aclose()


@dagrt.task(cache=True)
def cached_square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_cache_entry_replaced_is_never_unpickled(
    signed_pool: Pool, tmp_path: Path, forgery: str
) -> None:
    """Read back by the client (a run's output), by a worker (a task's input) and by an
    in-process run that keeps its cache on the server: IntegrityError each time."""
    canary = tmp_path / "canary"
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        with anyio.fail_after(30):
            assert await client.compute(cached_square(7)) == 49
        [entry] = [k async for k in storage.ascan_iter(K.cache_entry("*"))]
        elsewhere = cache_place(K.cache_entry("0" * 64))
        await storage.aset(entry, forgeries(canary, cache_place(entry), elsewhere)[forgery])
        with anyio.fail_after(30), pytest.raises(dagrt.IntegrityError, match="output 0 of run"):
            await client.compute(cached_square(7))
        with anyio.fail_after(30), pytest.raises(TaskError) as failed:
            await client.compute(add(cached_square(7), 1))
        assert failed.value.exc_type == "dagrt.IntegrityError"
    local = dagrt.Client(processes=False, cache={"url": signed_pool.url}, secret=SECRET)
    async with local:
        with anyio.fail_after(30), pytest.raises(dagrt.IntegrityError, match=entry):
            await local.compute(cached_square(7))
    assert not canary.exists()
    await storage.aclose()


async def test_cache_entries_are_shared_by_signed_runs_in_and_out_of_process(
    signed_pool: Pool,
) -> None:
    """An entry a worker sealed is read by an in-process run with the secret, and the
    other way round (the places are the entry's, whoever wrote it)."""
    local = dagrt.Client(processes=False, cache={"url": signed_pool.url}, secret=SECRET)
    async with dagrt.Client(signed_pool.url) as client, local:
        with anyio.fail_after(30):
            assert await client.compute(add(cached_square(3), 1)) == 10
            assert await local.compute(add(cached_square(3), 2)) == 11
            assert await local.compute(add(cached_square(4), 2)) == 18
            assert await client.compute(add(cached_square(4), 1)) == 17


@dagrt.task
def counted(path: str, x: int) -> int:
    with open(path, "a") as f:
        f.write("counted\n")
    return x + 1


@dagrt.task
def tens(x: int, fail: bool) -> int:
    if fail:
        raise ValueError("tens failed")
    return 10 * x


async def test_a_failed_run_resumes_from_its_sealed_outputs_and_not_from_a_forged_origin(
    signed_pool: Pool, tmp_path: Path
) -> None:
    """What a failed run finished is kept as it was sealed (for its run and task), with
    a signed note of where it came from: the resumed run reads it. A note that is not
    genuine leaves the entry unreadable: the task that needs it fails, nothing runs
    from it."""
    log = tmp_path / "log"
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        with anyio.fail_after(30), pytest.raises(TaskError, match="tens failed"):
            await client.compute(tens(counted(str(log), 1), True))
        with anyio.fail_after(30):
            assert await client.compute(tens(counted(str(log), 1), False), resume=True) == 20
        assert log.read_text().count("counted") == 1  # (read from the kept output)
        with anyio.fail_after(30), pytest.raises(TaskError, match="tens failed"):
            await client.compute(tens(counted(str(log), 2), True))
        notes = [k async for k in storage.ascan_iter(K.cache_entry("*:origin"))]
        for note in notes:  # a place of another run, with a made-up tag
            await storage.aset(note, b"\0" * 32 + output_place(K.new_run_id(), 0))
        with anyio.fail_after(30), pytest.raises(TaskError) as failed:
            await client.compute(tens(counted(str(log), 2), False), resume=True)
        assert failed.value.exc_type == "dagrt.IntegrityError"
    await storage.aclose()


@dagrt.task
def returns_a_gated_pair(signals: Signals) -> Any:
    return [gate(signals, "pair", 1), inc(5)]


async def test_the_outputs_a_graph_fills_its_task_with_are_the_signed_ones(
    signed_pool: Pool, signals: Signals
) -> None:
    """A task that returned a graph gets the graph's outputs, in the order its worker
    signed: the sub-run's list of outputs reordered in its meta (each value would
    still pass its seal) fails the task instead of swapping its values."""
    storage = RedisStorage(signed_pool.url)
    async with dagrt.Client(signed_pool.url) as client:
        fut = client.submit(returns_a_gated_pair(signals))
        await signals.started("pair")
        sub = K.RunKeys(K.sub_run_id(fut.run_id, 0))
        outputs = await storage.ahget(sub.meta, "outputs")
        assert outputs is not None
        await storage.ahset(sub.meta, {"outputs": b",".join(reversed(outputs.split(b",")))})
        await signals.release("pair")
        with anyio.fail_after(30), pytest.raises(TaskError, match="not the ones signed"):
            await fut
        with anyio.fail_after(30):  # untouched, the same
            assert await client.compute(returns_a_gated_pair(signals)) == [1, 6]
    await storage.aclose()
