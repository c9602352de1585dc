import sys
import time
from pathlib import Path

from eddy.stack.supervisor import Child, Supervisor


def test_dead_child_is_restarted_and_stop_is_orderly(tmp_path: Path) -> None:
    sup = Supervisor()
    crasher = sup.add(Child("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"], {}, tmp_path / "c.log"))
    sleeper = sup.add(Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "s.log"))
    deadline = time.monotonic() + 10
    while crasher.restarts < 2 and time.monotonic() < deadline:
        sup.tick()
        time.sleep(0.05)
    assert crasher.restarts >= 2
    assert crasher.history[:2] == [3, 3]
    assert sleeper.restarts == 0 and sleeper.pid is not None
    sup.stop_all(timeout_s=5)
    assert sleeper.proc is not None and sleeper.proc.poll() is not None
