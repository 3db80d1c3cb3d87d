"""The watchdog that ends a process whose librdkafka call blocks past its timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from sidecar.exactly_once.producer import OutRecord, TransactionalProducer
from sidecar.exactly_once.watchdog import EXIT_HUNG, Hung, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_call_is_handed_over_once_it_runs_grace_past_its_timeout() -> None:
    clock, hung = Clock(), []
    dog = Watchdog(grace_s=30, on_hung=hung.append, clock=clock)
    with dog.watch("send_offsets_to_transaction", 10, "tid"):
        clock.now += 39.9
        assert dog.check() == []
        clock.now += 0.2
        (h,) = dog.check()
        assert (h.call, h.owner, h.timeout_s) == ("send_offsets_to_transaction", "tid", 10)
        assert abs(h.running_s - 40.1) < 1e-6
        clock.now += 100
        assert dog.check() == []           # handed over once, not every second
    assert [h.call for h in hung] == ["send_offsets_to_transaction"]


def test_a_call_that_ended_is_never_handed_over() -> None:
    clock, hung = Clock(), []
    dog = Watchdog(grace_s=1, on_hung=hung.append, clock=clock)
    with dog.watch("commit_transaction", 5, "tid"):
        clock.now += 5
    clock.now += 1_000
    assert dog.check() == [] and hung == []


def test_only_the_overdue_one_of_two_calls_is_handed_over() -> None:
    clock, hung = Clock(), []
    dog = Watchdog(grace_s=0, on_hung=hung.append, clock=clock)
    with dog.watch("init_transactions", 60, "a"), dog.watch("abort_transaction", 1, "b"):
        clock.now += 2
        assert [(h.call, h.owner) for h in dog.check()] == [("abort_transaction", "b")]


class BlockingProducer:
    """send_offsets_to_transaction() blocks, past any timeout, until released: what
    librdkafka does when the group coordinator went away (issues #5456, #5511)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def init_transactions(self, timeout: float) -> None: ...
    def begin_transaction(self) -> None: ...
    def produce(self, *a: object, **kw: object) -> None: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...
    def poll(self, timeout: float) -> int: return 0
    def flush(self, timeout: float) -> int: return 0

    def send_offsets_to_transaction(self, offsets: object, meta: object,
                                    timeout: float) -> None:
        assert self.release.wait(10), "the watchdog never saw the hung call"


def test_a_hung_send_offsets_is_seen_by_the_producers_watchdog() -> None:
    fake, hung = BlockingProducer(), []

    def on_hung(h: Hung) -> None:
        hung.append(h)
        fake.release.set()     # in production: the process ends here

    dog = Watchdog(grace_s=0.05, on_hung=on_hung, interval_s=0.01)
    p = TransactionalProducer({"transaction.timeout.ms": 1000}, "enrich-0", producer=fake,
                              watchdog=dog)
    p.commit([OutRecord("t", b"v")], offsets=[object()], group_metadata=object())  # type: ignore[list-item]
    assert [(h.call, h.owner) for h in hung] == [("send_offsets_to_transaction", "enrich-0")]
    assert hung[0].running_s > hung[0].timeout_s


def test_the_default_action_ends_the_process_with_its_stacks_on_stderr() -> None:
    code = textwrap.dedent("""
        import threading
        from sidecar.common.logs import configure
        from sidecar.exactly_once.watchdog import Watchdog
        configure()
        dog = Watchdog(grace_s=0.05, interval_s=0.01)
        with dog.watch("send_offsets_to_transaction", 0.05, "enrich-0"):
            threading.Event().wait(20)
        print("still here")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == EXIT_HUNG
    assert "still here" not in run.stdout
    assert '"event": "kafka.call_hung"' in run.stderr
    assert '"call": "send_offsets_to_transaction"' in run.stderr
    assert "Thread 0x" in run.stderr      # every thread's stack, for the post-mortem
