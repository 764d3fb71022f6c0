"""Episodes as rosbag2 bags, written and read without rclpy.

One episode is one bag directory::

    episode_0003/
        metadata.yaml            rosbag2 metadata, version 5 (read by ros2 bag on Humble, Jazzy, Kilted)
        episode_0003_0.mcap      MCAP, profile ros2: CDR messages, schemas named pkg/msg/Type

``ros2 bag info/play episode_0003``, Foxglove, ``mcap`` tools, mcap-ros2-support and rosbags all
open it. What the episode was (task, success, operator note, the run's metadata, the recorder's
parameters, whether it was finished) is an MCAP metadata record named ``equimanip.episode``
(string keys, JSON values); like rosbag2 we also store the bag metadata as the record
``rosbag2`` so that the bare .mcap file is self-describing.

Nothing is lost or half-written under a final name: a bag is written inside a hidden directory
``.<name>.partial`` next to its final place and renamed into place (one atomic rename) only after
the MCAP summary and metadata.yaml are on disk. A crash leaves at most that hidden directory, which
readers skip; an error while writing (a full disk) raises :class:`BagWriteError` naming the bag and
the cause, and never touches other bags.

Message payloads are CDR bytes (what rclpy hands a ``raw=True`` subscription, or what
``rclpy.serialization.serialize_message`` makes) or any object/dict with the message's fields,
encoded here with the schema text.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import yaml
from mcap.reader import make_reader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2._dynamic import serialize_dynamic  # the encoder mcap_ros2.writer.Writer uses
from mcap_ros2.decoder import DecoderFactory

from equimanip.data.msgdefs import full_type_name, schema_text

METADATA_VERSION = 5          # portable: Humble reads up to 5, Jazzy and Kilted read every version
EPISODE_RECORD = "equimanip.episode"
ROSBAG2_RECORD = "rosbag2"
PARTIAL_SUFFIX = ".partial"
COMPRESSION = {"none": CompressionType.NONE, "zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4}


class BagWriteError(OSError):
    """A bag could not be written (unwritable directory, full disk, name taken); says which and why."""


class BagReadError(ValueError):
    """A path that is not a readable bag; says why."""


# ------------------------------------------------------------------------------------------ QoS


@dataclass(frozen=True)
class Qos:
    """The offered QoS of a topic as rosbag2 records it (enough to replay it faithfully)."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10

    def to_yaml(self) -> str:
        """rosbag2's ``offered_qos_profiles`` string for metadata versions < 9: a YAML list, enums
        as the rmw integers (history 1 keep last; reliability 1 reliable, 2 best effort;
        durability 1 transient local, 2 volatile; liveliness 1 automatic), durations infinite."""
        def infinite() -> dict:  # a new dict each time: YAML anchors/aliases are not for every parser
            return {"sec": 9223372036, "nsec": 854775807}

        profile = {
            "history": 1, "depth": int(self.depth),
            "reliability": 1 if self.reliable else 2,
            "durability": 1 if self.transient_local else 2,
            "deadline": infinite(), "lifespan": infinite(), "liveliness": 1,
            "liveliness_lease_duration": infinite(), "avoid_ros_namespace_conventions": False,
        }
        return yaml.safe_dump([profile], sort_keys=False)


RELIABLE = Qos()
SENSOR = Qos(reliable=False, depth=5)
LATCHED = Qos(transient_local=True, depth=1)


# ------------------------------------------------------------------------------------------ writing


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or name in (".", ".."):
        raise BagWriteError(f"'{name}' is not a bag name (a plain folder name, not hidden)")


class BagWriter:
    """Write one bag directory ``out_dir/name``; ``close()`` puts it in place, ``discard()`` drops it.

    Use as a context manager: leaving the block by an exception discards the bag (an episode that
    failed to record is not an episode); call ``close()`` inside the block to keep it."""

    def __init__(self, out_dir, name: str, compression: str = "none", chunk_size: int = 4 * 1024 * 1024,
                 crc: bool = True):
        """``crc``: CRC-32 checksums of the chunks and summary (readers verify them; about 3 ms per
        MB on the 2-core build machine, which matters for 5 MB clouds at 15 Hz)."""
        _check_name(name)
        if compression not in COMPRESSION:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSION)}, got '{compression}'")
        self.out_dir = Path(out_dir)
        self.name = name
        self.final_path = self.out_dir / name
        self.partial_path = self.out_dir / f".{name}{PARTIAL_SUFFIX}"
        self.file_name = f"{name}_0.mcap"
        self._compression = compression
        self._topics: dict[str, dict] = {}        # name -> {type, qos, channel, schema, count, encoder}
        self._schemas: dict[str, int] = {}
        self._start_ns: Optional[int] = None
        self._end_ns: Optional[int] = None
        self._count = 0
        self._closed = False
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.final_path.exists():
                raise FileExistsError(f"{self.final_path} already exists")
            if self.partial_path.exists():   # left by a writer that was killed: it is not an episode
                shutil.rmtree(self.partial_path)
            self.partial_path.mkdir()
            self._stream = open(self.partial_path / self.file_name, "wb")
            self._mcap = McapWriter(self._stream, chunk_size=chunk_size, compression=COMPRESSION[compression],
                                    enable_crcs=crc)
            self._mcap.start(profile="ros2", library="equimanip")
        except OSError as e:
            self._abandon()
            raise BagWriteError(f"cannot record into {self.out_dir}: {_reason(e)}") from e

    # ---------------------------------------------------------------------------------- topics
    def add_topic(self, topic: str, type_name: str, qos: Qos = RELIABLE) -> None:
        """Declare a topic (idempotent for the same type). Raises ValueError for a second type."""
        type_name = full_type_name(type_name)
        known = self._topics.get(topic)
        if known is not None:
            if known["type"] != type_name:
                raise ValueError(f"topic {topic} is {known['type']} in this bag, not {type_name}")
            return
        schema_id = self._schemas.get(type_name)
        if schema_id is None:
            text = schema_text(type_name)
            schema_id = self._guard(lambda: self._mcap.register_schema(
                type_name, SchemaEncoding.ROS2, text.encode()))
            self._schemas[type_name] = schema_id
        channel = self._guard(lambda: self._mcap.register_channel(
            topic, MessageEncoding.CDR, schema_id, {"offered_qos_profiles": qos.to_yaml()}))
        self._topics[topic] = {"type": type_name, "qos": qos, "channel": channel, "count": 0, "encoder": None}

    def write(self, topic: str, message: Any, log_time_ns: int, publish_time_ns: Optional[int] = None) -> None:
        """Append one message (CDR bytes, or an object/dict with the message's fields) to a declared topic."""
        self._check_open()
        info = self._topics.get(topic)
        if info is None:
            raise KeyError(f"topic {topic} was not declared with add_topic")
        if isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
        else:
            if info["encoder"] is None:
                info["encoder"] = serialize_dynamic(info["type"], schema_text(info["type"]))[info["type"]]
            data = info["encoder"](message)
        log_time_ns = int(log_time_ns)
        publish_time_ns = log_time_ns if publish_time_ns is None else int(publish_time_ns)
        self._guard(lambda: self._mcap.add_message(info["channel"], log_time_ns, data, publish_time_ns,
                                                   sequence=info["count"]))
        info["count"] += 1
        self._count += 1
        self._start_ns = log_time_ns if self._start_ns is None else min(self._start_ns, log_time_ns)
        self._end_ns = log_time_ns if self._end_ns is None else max(self._end_ns, log_time_ns)

    @property
    def message_count(self) -> int:
        return self._count

    def topic_counts(self) -> dict[str, int]:
        return {t: info["count"] for t, info in self._topics.items()}

    # ---------------------------------------------------------------------------------- closing
    def close(self, episode: Optional[dict] = None) -> Path:
        """Finish the file, write metadata.yaml, and rename the bag into its final place.

        ``episode``: what the episode was (JSON-serialisable values), stored as the MCAP metadata
        record ``equimanip.episode``. Returns the final path. On failure the bag is discarded and
        BagWriteError says why."""
        self._check_open()
        episode = dict(episode or {})
        try:
            record = {k: json.dumps(v) for k, v in episode.items()}
        except TypeError as e:
            self.discard()
            raise BagWriteError(f"episode metadata is not JSON-serialisable: {e}") from e
        metadata_yaml = yaml.safe_dump({"rosbag2_bagfile_information": self._metadata()}, sort_keys=False)

        def finish() -> None:
            self._mcap.add_metadata(EPISODE_RECORD, record)
            self._mcap.add_metadata(ROSBAG2_RECORD, {"serialized_metadata": metadata_yaml})
            self._mcap.finish()
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            (self.partial_path / "metadata.yaml").write_text(metadata_yaml)
            _fsync_path(self.partial_path / "metadata.yaml")
            if self.final_path.exists():
                raise FileExistsError(f"{self.final_path} appeared while recording")
            os.rename(self.partial_path, self.final_path)
            _fsync_path(self.out_dir)

        self._guard(finish)
        self._closed = True
        return self.final_path

    def discard(self) -> None:
        """Drop the bag: nothing of it stays on disk. Safe to call more than once."""
        self._closed = True
        self._abandon()

    def _abandon(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None and not stream.closed:
            try:
                stream.close()
            except OSError:
                pass  # a full disk can fail the close's flush too; the directory goes anyway
        shutil.rmtree(self.partial_path, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise BagWriteError(f"bag {self.name} is already closed")

    def _guard(self, fn):
        """Run a write; an OSError (full disk, lost directory) discards the bag and says so."""
        try:
            return fn()
        except OSError as e:
            self.discard()
            raise BagWriteError(f"recording {self.final_path} failed, episode discarded: {_reason(e)}") from e

    def _metadata(self) -> dict:
        start = self._start_ns or 0
        duration = (self._end_ns - self._start_ns) if self._count else 0
        topics = [{
            "topic_metadata": {
                "name": t, "type": info["type"], "serialization_format": "cdr",
                "offered_qos_profiles": info["qos"].to_yaml(),
            },
            "message_count": info["count"],
        } for t, info in self._topics.items()]
        return {
            "version": METADATA_VERSION,
            "storage_identifier": "mcap",
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": self._count,
            "topics_with_message_count": topics,
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [self.file_name],
            "files": [{"path": self.file_name, "starting_time": {"nanoseconds_since_epoch": start},
                       "duration": {"nanoseconds": duration}, "message_count": self._count}],
        }

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            if exc_type is None:
                self.close()
            else:
                self.discard()


def _reason(e: OSError) -> str:
    text = e.strerror or str(e)
    if e.errno is not None and e.errno == 28:
        text += " (the disk is full)"
    return f"{text} [{e.filename}]" if e.filename else text


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(out_dir) -> Path:
    """Make ``out_dir`` if needed and prove a file can be created in it; BagWriteError otherwise."""
    out_dir = Path(out_dir)
    probe = out_dir / f".equimanip-write-test-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"x")
        probe.unlink()
    except OSError as e:
        raise BagWriteError(f"cannot record into {out_dir}: {_reason(e)}") from e
    return out_dir


# ------------------------------------------------------------------------------------------ reading


@dataclass
class TopicInfo:
    name: str
    type: str
    count: int
    qos: str = ""


@dataclass
class Bag:
    """A bag read back: its metadata, topics, episode record, and messages on demand."""

    path: Path                   # the bag directory (or the .mcap file of a bare file)
    mcap_path: Path
    metadata: dict               # rosbag2_bagfile_information
    topics: dict[str, TopicInfo]
    episode: dict                # the equimanip.episode record, decoded (empty when absent)
    start_ns: int
    end_ns: int
    message_count: int
    _decoders: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def raw_messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[tuple[str, int, bytes]]:
        """``(topic, log_time_ns, CDR bytes)`` in log-time order."""
        with open(self.mcap_path, "rb") as f:
            reader = make_reader(f)
            for _schema, channel, message in reader.iter_messages(topics=list(topics) if topics else None,
                                                                  log_time_order=True):
                yield channel.topic, message.log_time, message.data

    def messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[tuple[str, int, Any]]:
        """``(topic, log_time_ns, message)``, decoded from the schemas stored in the file (objects
        with the message's fields; uint8[] as bytes)."""
        with open(self.mcap_path, "rb") as f:
            reader = make_reader(f)
            for schema, channel, message in reader.iter_messages(topics=list(topics) if topics else None,
                                                                 log_time_order=True):
                yield channel.topic, message.log_time, self._decode(schema, message.data)

    def _decode(self, schema, data: bytes):
        decoder = self._decoders.get(schema.id)
        if decoder is None:
            decoder = self._decoders[schema.id] = DecoderFactory().decoder_for(MessageEncoding.CDR, schema)
        return decoder(data)


def is_bag_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and not path.name.startswith(".") and (path / "metadata.yaml").is_file()


def read_bag(path) -> Bag:
    """Open a bag directory (metadata.yaml + MCAP) or a bare .mcap file; BagReadError if it is
    neither, or if the file is truncated (a recording that never closed)."""
    path = Path(path)
    if path.is_dir():
        meta_file = path / "metadata.yaml"
        if not meta_file.is_file():
            raise BagReadError(f"{path} is not a bag: it has no metadata.yaml")
        try:
            info = yaml.safe_load(meta_file.read_text())["rosbag2_bagfile_information"]
            files = info["relative_file_paths"]
        except (yaml.YAMLError, KeyError, TypeError) as e:
            raise BagReadError(f"{meta_file} is not rosbag2 metadata: {e}") from e
        if info.get("storage_identifier") != "mcap" or len(files) != 1:
            raise BagReadError(f"{path}: only single-file MCAP bags are read here "
                               f"(storage {info.get('storage_identifier')}, {len(files)} files)")
        mcap_path = path / files[0]
    elif path.suffix == ".mcap" and path.is_file():
        mcap_path, info = path, None
    else:
        raise BagReadError(f"{path} is neither a bag directory nor an .mcap file")
    try:
        with open(mcap_path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            if summary is None:
                raise BagReadError(f"{mcap_path} has no summary: the recording was not closed")
            records = {m.name: m.metadata for m in reader.iter_metadata()}
    except BagReadError:
        raise
    except Exception as e:  # noqa: BLE001 - the mcap reader raises several types for a bad file
        raise BagReadError(f"{mcap_path} is not a readable MCAP file: {e}") from e
    if info is None:
        serialized = records.get(ROSBAG2_RECORD, {}).get("serialized_metadata")
        info = yaml.safe_load(serialized)["rosbag2_bagfile_information"] if serialized else {}
    stats = summary.statistics
    counts = stats.channel_message_counts if stats else {}
    topics = {}
    for channel_id, channel in summary.channels.items():
        schema = summary.schemas.get(channel.schema_id)
        topics[channel.topic] = TopicInfo(channel.topic, schema.name if schema else "", counts.get(channel_id, 0),
                                          channel.metadata.get("offered_qos_profiles", ""))
    episode = {}
    for key, value in records.get(EPISODE_RECORD, {}).items():
        try:
            episode[key] = json.loads(value)
        except json.JSONDecodeError:
            episode[key] = value
    return Bag(path=path, mcap_path=mcap_path, metadata=info or {}, topics=topics, episode=episode,
               start_ns=stats.message_start_time if stats else 0, end_ns=stats.message_end_time if stats else 0,
               message_count=stats.message_count if stats else 0)


def list_bags(directory) -> list[Path]:
    """The finished bag directories in ``directory`` (sorted by name; hidden partial ones left out)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BagReadError(f"{directory} is not a directory")
    return sorted(p for p in directory.iterdir() if is_bag_dir(p))


def list_partial(directory) -> list[Path]:
    """Bags left half-written by a recorder that was killed (never read as episodes)."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_dir() and p.name.startswith(".") and p.name.endswith(PARTIAL_SUFFIX))
