"""ReasonThrottle: one clock per reason, a bounded table of reasons, bounded lines."""
from equimanip.nodes.throttle import ReasonThrottle, reason_key


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


def make(**kw):
    clock, logger = Clock(), Logger()
    return ReasonThrottle(logger, period_s=1.0, clock=clock, **kw), clock, logger


def test_each_reason_has_its_own_clock():
    throttle, clock, logger = make()
    assert throttle.warning("a", "first a")
    assert throttle.warning("b", "first b")           # another reason, same instant: logged
    assert not throttle.warning("a", "second a")      # same reason within the period: held
    clock.now = 0.5
    assert not throttle.warning("a", "third a")
    clock.now = 1.2
    assert throttle.warning("a", "fourth a")
    assert logger.lines == ["first a", "first b", "fourth a [2 more like this in the last 1.2 s]"]


def test_the_table_of_reasons_is_bounded():
    throttle, clock, logger = make(max_reasons=3)
    for k in range(10):
        throttle.warning(f"reason {k}", f"line {k}")
    # Three reasons of their own, then all others share one clock: 4 lines, not 10.
    assert logger.lines == ["line 0", "line 1", "line 2", "line 3"]


def test_long_lines_are_cut():
    throttle, clock, logger = make(max_chars=20)
    throttle.warning("long", "x" * 500)
    assert logger.lines == ["x" * 20 + "... (480 more characters)"]


def test_reason_key_takes_the_values_out():
    assert reason_key("twist.linear has non-finite values [nan, 0.0, 1e+30]") == \
        reason_key("twist.linear has non-finite values [1.0, inf, 2]")
    assert reason_key("names unknown joints ['a']") == reason_key("names unknown joints ['b', 'c']")
    assert reason_key("stamped 0.5 s ago") != reason_key("stamped 0.5 s in the future")
