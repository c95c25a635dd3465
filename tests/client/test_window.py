"""The send window's bookkeeping, without a socket."""

from __future__ import annotations

import pytest

from bk_notebook.client.window import SendWindow, WindowMode

pytestmark = pytest.mark.pure  # the tests mutation testing runs (TESTING.md)


def test_a_full_window_waits_for_answers() -> None:
    window = SendWindow(3)
    window.on_answers(0, 0)
    window.on_sent()
    window.on_answers(1, 1)  # the first chunk's empty acknowledgement: a per-chunk server
    assert window.mode is WindowMode.ACKNOWLEDGED
    for _ in range(3):
        assert window.may_send()
        window.on_sent()
    assert not window.may_send() and window.in_flight == 3
    window.on_answers(2, 1)
    assert window.may_send() and not window.may_resume()  # a waiting sender waits for half the window
    window.on_answers(3, 1)
    assert window.may_resume()
    window.on_sent()
    window.on_sent()
    assert not window.may_send()


def test_an_unproven_window_holds_back_briefly() -> None:
    window = SendWindow(4)
    window.on_sent(4)
    assert window.mode is WindowMode.UNKNOWN and not window.may_send()
    assert window.wait_limit == window.probe < window.patience
    window.on_answers(3, 1)
    assert window.mode is WindowMode.ACKNOWLEDGED and window.wait_limit == window.patience


def test_a_server_answering_only_changes_turns_the_window_off() -> None:
    window = SendWindow(2)
    window.on_sent(10)
    window.on_answers(3, 0)
    assert window.mode is WindowMode.UNKNOWN and not window.may_send()
    window.on_answers(4, 0)  # two windows of answers, none of them empty
    assert window.mode is WindowMode.OFF and window.may_send()


def test_a_stall_turns_the_window_off_for_good() -> None:
    window = SendWindow(2)
    window.on_sent(2)
    window.on_answers(0, 0)
    window.on_answers(1, 1)
    window.on_sent(1)
    assert not window.may_send()
    window.on_stall()
    assert window.may_send()
    window.on_answers(3, 3)  # a late acknowledgement does not turn it back on
    window.on_sent(50)
    assert window.mode is WindowMode.OFF and window.may_send()


def test_no_limit_means_no_window() -> None:
    window = SendWindow(None)
    window.on_sent(10_000)
    assert window.mode is WindowMode.OFF and window.may_send()


def test_the_limit_is_checked() -> None:
    with pytest.raises(ValueError):
        SendWindow(0)


def test_a_window_of_one_chunk_and_the_message_for_less() -> None:
    window = SendWindow(1)
    window.on_sent()
    assert not window.may_send() and not window.may_resume()
    window.on_answers(1, 1)
    assert window.may_send() and window.may_resume()
    with pytest.raises(ValueError, match="^the window holds at least one chunk$"):
        SendWindow(-3)


def test_a_sender_waiting_on_a_full_window_resumes_at_half_of_it() -> None:
    window = SendWindow(4)
    window.on_sent(4)
    window.on_answers(1, 1)
    assert window.in_flight == 3 and not window.may_resume()
    window.on_answers(2, 1)
    assert window.in_flight == 2 and window.may_resume()  # 4 // 2


def test_default_waits_a_quarter_second_unproven_and_five_seconds_proven() -> None:
    window = SendWindow(2)
    assert window.wait_limit == 0.25
    window.on_answers(0, 1)
    assert window.wait_limit == 5.0
    assert repr(window) == "SendWindow(acknowledged, 0/2 in flight)"
