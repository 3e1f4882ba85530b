"""The wire codec: round trips, and hostile input that may only raise ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfate.protocol import (
    MAX_EPOCH,
    MAX_FRAMES,
    CancelConfirmType,
    ClientDisconnect,
    Heartbeat,
    ProtocolError,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    TaskStarted,
    decode,
    encode,
)

task_ids = st.binary(min_size=16, max_size=16).map(TaskID)
# Cancel epochs: the ends of the range, and anything between.
epochs = st.one_of(st.sampled_from([0, 1, 255, 256, MAX_EPOCH - 1, MAX_EPOCH]), st.integers(0, MAX_EPOCH))
messages = st.one_of(
    st.builds(Task, task_ids, st.binary(max_size=64), st.none() | task_ids, st.lists(task_ids, max_size=3).map(tuple)),
    st.builds(TaskCancel, task_ids, st.booleans(), epochs),
    st.builds(TaskCancelConfirm, task_ids, st.sampled_from(CancelConfirmType), epochs),
    st.builds(TaskResult, task_ids, st.sampled_from(TaskResultType), st.binary(max_size=64)),
    st.builds(TaskStarted, task_ids),
    st.just(Heartbeat()),
    st.just(ClientDisconnect()),
)


@given(messages)
def test_every_message_round_trips(message):
    frames = encode(message)
    assert all(type(frame) is bytes for frame in frames)
    assert decode(frames) == message


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_arbitrary_frames_decode_or_raise_protocol_error(frames):
    try:
        message = decode(frames)
    except ProtocolError as error:
        assert error.reason
    else:
        assert encode(message) == frames


@given(messages, st.data())
def test_corrupting_one_frame_never_escapes_protocol_error(message, data):
    frames = encode(message)
    index = data.draw(st.integers(0, len(frames) - 1))
    frames[index] = data.draw(st.binary(max_size=20))
    try:
        decode(frames)
    except ProtocolError:
        pass


@given(st.lists(st.one_of(st.integers(), st.text(), st.none(), st.floats(), st.binary()), max_size=5))
def test_non_bytes_frames_raise_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ([], "no frames"),
        ([b"XX"], "unknown message tag"),
        ([b"TR", b"\x00" * 16, b"\x00"], "TaskResult takes 4 frames"),
        ([b"TR", b"\x00" * 15, b"\x00", b""], "task id must be 16 bytes"),
        ([b"TR", b"\x00" * 16, b"\x07", b""], "bad result type"),
        ([b"CC", b"\x00" * 16, b"\x03", b"\x00" * 4], "bad confirm type"),
        ([b"TC", b"\x00" * 16, b"\x02", b"\x00" * 4], "bad cancel flags"),
        ([b"CC", b"\x00" * 16, b"\x00"], "TaskCancelConfirm takes 4 frames, got 3"),
        ([b"TC", b"\x00" * 16, b"\x01"], "TaskCancel takes 4 frames, got 3"),
        ([b"CC", b"\x00" * 16, b"\x00", b""], "confirm epoch must be 4 bytes, got 0"),
        ([b"CC", b"\x00" * 16, b"\x00", b"\x00" * 3], "confirm epoch must be 4 bytes, got 3"),
        ([b"CC", b"\x00" * 16, b"\x00", b"\x00" * 5], "confirm epoch must be 4 bytes, got 5"),
        ([b"CC", b"\x00" * 16, b"\x00", b"\x00" * 8], "confirm epoch must be 4 bytes, got 8"),
        ([b"TC", b"\x00" * 16, b"\x01", b""], "cancel epoch must be 4 bytes, got 0"),
        ([b"TC", b"\x00" * 16, b"\x01", b"\x01" * 5], "cancel epoch must be 4 bytes, got 5"),
        ([b"CC", b"\x00" * 16, b"\x00", 7], "frame 3 is int"),
        ([b"TK", b"\x00" * 16, b"\x01", b"", b""], "group id must be 16 bytes"),
        ([b"TK", b"\x00" * 16, b"", b"", b"\x00" * 17], "not a multiple of 16"),
        ([b"TR", b"\x00" * 16, b"\x00", 5], "frame 3 is int"),
        ([b"TS"], "TaskStarted takes 2 frames"),
        ([b"TS", b"\x00" * 16, b""], "TaskStarted takes 2 frames"),
        ([b"TS", b"\x00" * 17], "task id must be 16 bytes"),
        ([b"TS", b""], "task id must be 16 bytes"),
        ([b"TS", 16], "frame 1 is int"),
        (None, "frames must be a sequence"),
    ],
)
def test_malformed_frames_name_the_problem(frames, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        decode(frames)


def test_frame_size_limit_is_configurable():
    frames = encode(TaskResult(TaskID.new(), TaskResultType.SUCCESS, b"x" * 100))
    assert decode(frames, max_frame_size=100).payload == b"x" * 100
    with pytest.raises(ProtocolError, match="over the limit of 99"):
        decode(frames, max_frame_size=99)


def test_bytes_like_frames_are_accepted():
    message = TaskCancelConfirm(TaskID.new(), CancelConfirmType.CANCEL_FAILED)
    frames = [memoryview(frame) for frame in encode(message)]
    frames[1] = bytearray(frames[1])
    assert decode(frames) == message


def test_messages_are_immutable_values():
    task_id = TaskID.new()
    assert TaskCancel(task_id, True) == TaskCancel(task_id, True)
    assert TaskCancel(task_id, True) != TaskCancel(task_id, False)
    assert TaskCancelConfirm(task_id, CancelConfirmType.CANCELED) != TaskResult(task_id, TaskResultType.SUCCESS)
    with pytest.raises(AttributeError):
        TaskCancel(task_id, True).force = False  # type: ignore[misc]


def test_task_id_is_sixteen_bytes():
    assert len(TaskID.new()) == 16
    assert TaskID.new() != TaskID.new()
    with pytest.raises(ValueError):
        TaskID(b"short")


def test_encode_refuses_non_messages():
    with pytest.raises(TypeError):
        encode("not a message")  # type: ignore[arg-type]


class _HostileLength(list):
    def __init__(self, length):
        super().__init__([b"TR"])
        self.length = length

    def __len__(self):
        return self.length


@pytest.mark.parametrize(
    "frames",
    [
        {b"TR": b""},
        {b"TR"},
        "TR",
        b"TR",
        _HostileLength(-1),
        _HostileLength(2**70),
    ],
    ids=["dict", "set", "str", "bytes", "negative-len", "huge-len"],
)
def test_non_sequences_and_hostile_containers_raise_protocol_error(frames):
    with pytest.raises(ProtocolError):
        decode(frames)


def test_a_released_buffer_raises_protocol_error():
    view = memoryview(bytearray(b"TR"))
    view.release()
    with pytest.raises(ProtocolError, match="cannot be read"):
        decode([view, b"\x00" * 16, b"\x00", b""])


def test_task_started_has_its_own_two_frame_layout():
    task_id = TaskID.new()
    frames = encode(TaskStarted(task_id))
    assert frames == [b"TS", bytes(task_id)]
    decoded = decode([bytearray(frame) for frame in frames])
    assert type(decoded) is TaskStarted and decoded.task_id == task_id
    with pytest.raises(ProtocolError, match="over the limit of 15"):
        decode(frames, max_frame_size=15)


def test_dependencies_over_the_limit_are_refused_by_count():
    ids = tuple(TaskID.new() for _ in range(3))
    frames = encode(Task(TaskID.new(), b"p", TaskID.new(), ids))
    assert decode(frames, max_dependencies=3).dependencies == ids
    with pytest.raises(ProtocolError, match="names 3 dependencies, over the limit of 2"):
        decode(frames, max_dependencies=2)


def test_the_default_dependency_limit_is_documented_and_enforced():
    from taskfate.protocol import DEFAULT_MAX_DEPENDENCIES

    at_limit = [b"TK", b"\x00" * 16, b"", b"", b"\x01" * 16 * DEFAULT_MAX_DEPENDENCIES]
    assert len(decode(at_limit).dependencies) == DEFAULT_MAX_DEPENDENCIES
    # The frame that used to stall a scheduler: four million ids, just under 64 MiB.
    with pytest.raises(ProtocolError, match="over the limit of"):
        decode([b"TK", b"\x00" * 16, b"", b"", bytes(64 * 1024 * 1024 - 16)])


class _Watched(list):
    """A frame list that records which frames were read."""

    def __init__(self, frames):
        super().__init__(frames)
        self.read: set[int] = set()

    def __getitem__(self, index):
        self.read.add(index)
        return super().__getitem__(index)

    def __iter__(self):
        self.read.update(range(len(self)))
        return super().__iter__()


@pytest.mark.parametrize("tag", [b"TK", b"HB", b"TS", b"TR"])
def test_a_list_of_too_many_frames_is_refused_before_the_rest_is_read(tag):
    frames = _Watched([tag] + [b""] * 100_000)
    with pytest.raises(ProtocolError, match="frames, got 100001"):
        decode(frames)
    assert frames.read == {0}


def test_an_unknown_tag_is_refused_before_the_other_frames_are_read():
    frames = _Watched([b"??", 5, None, object()])
    with pytest.raises(ProtocolError, match="unknown message tag"):
        decode(frames)
    assert frames.read == {0}


# -- Cancel epochs on the wire -----------------------------------------------------


def test_a_cancel_epoch_is_four_bytes_big_endian_after_the_other_frames():
    task_id = TaskID.new()
    assert encode(TaskCancel(task_id, False, 0x01020304)) == [b"TC", task_id, b"\x00", b"\x01\x02\x03\x04"]
    confirm = TaskCancelConfirm(task_id, CancelConfirmType.CANCEL_FAILED, MAX_EPOCH)
    assert encode(confirm) == [b"CC", task_id, b"\x01", b"\xff\xff\xff\xff"]
    assert decode([b"CC", task_id, b"\x02", b"\x00\x00\x01\x00"]) == TaskCancelConfirm(task_id, CancelConfirmType.CANCEL_NOT_FOUND, 256)


def test_a_message_built_without_an_epoch_is_unnumbered():
    """The trailing field's default keeps every older constructor call
    meaning what it meant: epoch 0, four zero bytes on the wire."""
    task_id = TaskID.new()
    assert TaskCancel(task_id) == TaskCancel(task_id, True, 0)
    assert TaskCancelConfirm(task_id, CancelConfirmType.CANCELED).epoch == 0
    assert encode(TaskCancel(task_id))[-1] == encode(TaskCancelConfirm(task_id, CancelConfirmType.CANCELED))[-1] == bytes(4)
    assert TaskCancel(task_id, True, 1) != TaskCancel(task_id, True, 2)


@pytest.mark.parametrize("epoch", [-1, MAX_EPOCH + 1, 2**64, True, 1.0, "1", None])
def test_encode_refuses_an_epoch_the_wire_cannot_carry(epoch):
    task_id = TaskID.new()
    for message in (TaskCancel(task_id, True, epoch), TaskCancelConfirm(task_id, CancelConfirmType.CANCELED, epoch)):
        with pytest.raises(ValueError, match="a cancel epoch is an int from 0 to 4294967295"):
            encode(message)


@given(st.binary(max_size=9), st.sampled_from([b"TC", b"CC"]), st.sampled_from([list, tuple]))
def test_any_epoch_frame_decodes_or_raises_protocol_error_naming_the_epoch(frame, tag, container):
    frames = container([tag, bytes(16), b"\x01", frame])
    if len(frame) == 4:
        assert decode(frames).epoch == int.from_bytes(frame, "big")
    else:
        with pytest.raises(ProtocolError, match=f"epoch must be 4 bytes, got {len(frame)}"):
            decode(frames)


# -- Frame counts one off, for every message kind -------------------------------------

_ONE_OF_EACH = [
    Task(TaskID.new(), b"payload", TaskID.new(), (TaskID.new(),)),
    TaskCancel(TaskID.new(), False, 3),
    TaskCancelConfirm(TaskID.new(), CancelConfirmType.CANCEL_FAILED, 3),
    TaskResult(TaskID.new(), TaskResultType.SUCCESS, b"value"),
    TaskStarted(TaskID.new()),
    Heartbeat(),
    ClientDisconnect(),
]
# What a stray frame may look like: empty, a tag, an id, an epoch, a payload,
# and frames that are not bytes objects.
_STRAYS = [b"", b"TR", bytes(16), bytes(4), b"\x00", b"payload", bytearray(b"\x01"), memoryview(bytes(16))]


def test_the_frame_count_of_each_kind_is_what_its_message_encodes_to():
    from taskfate.protocol.codec import _DECODERS

    assert sorted(type(message).__name__ for message in _ONE_OF_EACH) == sorted(name for name, _, _ in _DECODERS.values())
    for message in _ONE_OF_EACH:
        frames = encode(message)
        name, count, _ = _DECODERS[frames[0]]
        assert (name, count) == (type(message).__name__, len(frames))
        assert count <= MAX_FRAMES


@pytest.mark.parametrize("message", _ONE_OF_EACH, ids=lambda message: type(message).__name__)
@pytest.mark.parametrize("container", [list, tuple])
def test_one_frame_too_many_or_too_few_raises_protocol_error_and_nothing_else(message, container):
    """Wherever the extra frame goes, whichever frame is missing, and
    whatever the stray frame holds: the message is refused on its count
    (or, with no frame left, as empty), never decoded and never with
    another error."""
    frames = encode(message)
    name = type(message).__name__
    shapes = []
    for index in range(len(frames) + 1):
        for stray in _STRAYS:
            shapes.append(frames[:index] + [stray] + frames[index:])
    for index in range(len(frames)):
        shapes.append(frames[:index] + frames[index + 1 :])
    for shape in shapes:
        try:
            decoded = decode(container(shape))
        except ProtocolError as error:
            assert type(error) is ProtocolError and error.reason
            if len(shape) == len(frames) + 1 and shape[0] == frames[0]:
                assert error.reason == f"{name} takes {len(frames)} frames, got {len(shape)}"
        else:
            # Only a shape that happens to be another kind's whole message
            # may decode (a stray tag in front, or a tag dropped): it must
            # then be a message of that other kind, never of this one.
            assert shape[0] != frames[0] and encode(decoded) == [bytes(frame) for frame in shape]
