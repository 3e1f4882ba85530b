"""The codec's fast path for results and cancel confirms says exactly what
the general path says.

``decode`` takes a shortcut for a list or tuple of ``bytes`` shaped like a
``TaskResult`` or a ``TaskCancelConfirm`` and builds the message without its
generated ``__init__``. Any other sequence goes the general way, so handing
the same frames in a ``Sequence`` that is not a list is the reference.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfate.protocol import (
    MAX_EPOCH,
    CancelConfirmType,
    ProtocolError,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    decode,
    encode,
)


class Frames(Sequence):
    """The same frames, in a sequence the fast path does not take."""

    def __init__(self, frames):
        self.frames = list(frames)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        return self.frames[index]


def outcome(frames, **kwargs):
    try:
        return decode(frames, **kwargs)
    except ProtocolError:
        return ProtocolError


task_ids = st.binary(min_size=16, max_size=16).map(TaskID)
answers = st.one_of(
    st.builds(TaskResult, task_ids, st.sampled_from(TaskResultType), st.binary(max_size=32)),
    st.builds(TaskCancelConfirm, task_ids, st.sampled_from(CancelConfirmType), st.integers(0, MAX_EPOCH)),
)
# Frames near the fast path's shape: a real answer's frames with one frame
# replaced by a wrong tag, an id of the wrong length, a code out of range, or
# the same bytes as a bytearray; sometimes a frame more or less.
replacement = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"TR", b"CC", b"TK", b"\x00", b"\x02", b"\x03", b"\xff", b"\x00\x00", bytes(3), bytes(4), bytes(5), bytes(15), bytes(17)]),
)


@st.composite
def near(draw):
    frames = encode(draw(answers))
    index = draw(st.integers(0, len(frames) - 1))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        frames[index] = draw(replacement)
    elif choice == 1:
        frames[index] = bytearray(frames[index])
    elif choice == 2:
        frames.append(draw(replacement))
    else:
        del frames[index]
    return frames


@given(answers)
def test_fast_path_builds_the_same_value(message):
    frames = encode(message)
    fast = decode(frames)
    assert type(fast) is type(message)
    assert fast == message == decode(Frames(frames)) == decode(tuple(frames))
    assert hash(fast) == hash(message)
    assert type(fast.task_id) is TaskID
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.task_id = TaskID(bytes(16))  # type: ignore[misc]


@given(near(), st.sampled_from([None, 8, 16, 17]))
def test_fast_path_agrees_with_the_general_path_on_any_frames(frames, limit):
    kwargs = {} if limit is None else {"max_frame_size": limit}
    assert outcome(frames, **kwargs) == outcome(Frames(frames), **kwargs)


@given(answers)
def test_a_frame_over_the_limit_is_refused_on_the_fast_path_too(message):
    frames = encode(message)
    limit = max(len(f) for f in frames) - 1
    if limit >= 16:
        with pytest.raises(ProtocolError):
            decode(frames, max_frame_size=limit)


@pytest.mark.parametrize(("tag", "last"), [(b"TR", b"payload"), (b"CC", b"\x00\x00\x01\x02"), (b"TR", bytes(4)), (b"CC", b"payload")])
def test_every_code_byte_decodes_as_on_the_general_path(tag, last):
    """Results and confirms are both four frames: each code byte, behind
    either tag, with a payload or an epoch-sized last frame."""
    for code in range(256):
        frames = [tag, bytes(16), bytes([code]), last]
        assert outcome(frames) == outcome(Frames(frames))


# -- The drafts the fast builders fill -------------------------------------------------


def test_every_draft_fits_its_message_class():
    from taskfate.protocol import codec

    assert codec.DRAFTS_FIT
    for build, cls in ((codec._new_result, TaskResult), (codec._new_confirm, TaskCancelConfirm), (codec._new_cancel, TaskCancel)):
        assert build is not cls  # the fast builder, not the fallback


@given(task_ids, st.booleans(), st.integers(0, MAX_EPOCH))
def test_a_drafted_cancel_is_a_real_frozen_task_cancel(task_id, force, epoch):
    from taskfate.protocol.codec import _new_cancel

    built = _new_cancel(task_id, force, epoch)
    reference = TaskCancel(task_id, force, epoch)
    assert type(built) is TaskCancel and built == reference and hash(built) == hash(reference)
    assert repr(built) == repr(reference) and dataclasses.astuple(built) == (task_id, force, epoch)
    assert pickle.loads(pickle.dumps(built)) == reference
    assert decode(encode(built)) == reference
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.force = not force  # type: ignore[misc]
    # A new attribute fails as on a constructed one (how depends on the
    # Python version: 3.11's slotted frozen dataclasses raise TypeError).
    for message in (built, reference):
        with pytest.raises((AttributeError, TypeError)) as raised:
            message.extra = 1  # type: ignore[attr-defined]
        assert not hasattr(message, "extra")
    assert type(raised.value) is type(_raises(lambda: setattr(built, "extra", 1)))


def _raises(action):
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("no error")


def test_a_message_class_that_changed_shape_is_not_a_fit_and_nothing_raises():
    from taskfate.protocol.codec import _draft_class, draft_fits

    @dataclasses.dataclass(frozen=True, slots=True)
    class Grown:
        task_id: TaskID
        force: bool = True
        reason: str = ""  # a field a two-field builder would leave unset

    draft = _draft_class(Grown)

    def build(task_id, force):
        message = draft()
        message.task_id = task_id
        message.force = force
        message.__class__ = Grown
        return message

    task_id = TaskID(bytes(16))
    assert not draft_fits(build, Grown, ("task_id", "force"), (task_id, False))
    # Even told the right fields, the half-filled message is no fit.
    assert not draft_fits(build, Grown, ("task_id", "force", "reason"), (task_id, False))
    assert draft_fits(TaskCancel, TaskCancel, ("task_id", "force", "epoch"), (task_id, False, 1))
    # The two-field builders of before the epoch are no fit for today's classes.
    assert not draft_fits(build, TaskCancel, ("task_id", "force"), (task_id, False))
