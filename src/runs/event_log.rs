//! A run's TensorBoard event log (`<run>/tensorboard/`): the scalars of each `metrics.csv` row
//! (and, optionally, the training loss and lr every few steps) in the file format TensorBoard
//! 2.x reads, and read back with both CRCs checked.
//!
//! **Format.** A TFRecord file of protobuf `Event`s. Each record is the data's length (u64 LE),
//! the masked CRC32C of those 8 bytes, the data, the masked CRC32C of the data. The first event
//! holds `file_version: "brain.Event:2"`; each later one a `Summary` with one `simple_value` (a
//! float32), one event per scalar, as Keras's `TensorBoard` callback wrote them. The messages are
//! the few fields of TensorFlow's `event.proto` and `summary.proto` that we use, declared with
//! prost's derive macros (no .proto compilation); CRC32C is the `crc32c` crate. The unit tests
//! compare our bytes with bytes written by the `tensorboard` package's own record writer.
//!
//! **Names.** Epoch scalars carry the CSV's column names at step = `epoch` (0-based, Keras's
//! `update_freq='epoch'`); step scalars are `step/loss` and `step/lr` at the global step. The
//! file is `events.out.tfevents.<unix seconds>.<host>.resnext`.
//!
//! **Wall times.** The CSV has none, so every writer says which: [`EventLog::append_epoch`] and
//! [`StepScalars`] take the time the caller measured ([`crate::clock`]); [`EventLog::rewrite`]
//! takes one per row, and [`wall_times_ending_at`] reconstructs them when they were not kept (the
//! last row at a known time, earlier ones spaced by their `epoch_seconds`, training and evaluation;
//! what runs between epochs, such as saving a checkpoint, is not in them, so those points sit a
//! little late). The `file_version` event gets the earliest time in the file.
//!
//! **Crashes.** A rewrite is atomic (see [`crate::atomic_file::write_atomic_via`]) through a temporary
//! name without `tfevents`, which TensorBoard would read as an event file. Each append is synced
//! before it returns, so a crash leaves at most the records being written cut short, at the end of
//! the file, where TensorBoard stops (and [`read`] reports it). A rewritten log gets a name that
//! sorts after the old one's, so a TensorBoard already watching reads it as a new file from its
//! start (its data server then drops the old points at steps the new file repeats), instead of
//! following the old file's unlinked contents.
use crate::atomic_file;
use crate::clock;
use crate::runs::metrics::EpochRow;
use anyhow::{anyhow, ensure, Context, Result};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE_VERSION: &str = "brain.Event:2";
const PREFIX: &str = "events.out.tfevents.";
/// TensorBoard (its Python loader and its Rust data server alike) reads every file whose name
/// contains this as an event file.
const INFIX: &str = "tfevents";
/// The name a log is written under before it is renamed into place (no [`INFIX`]).
const TEMP: &str = "events.being-written.tmp";

/// One scalar of an event file, as TensorBoard reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarEvent {
    pub step: i64,
    pub tag: String,
    /// `simple_value` is a float32.
    pub value: f32,
    pub wall_time: f64,
}

/// What an event file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFile {
    pub scalars: Vec<ScalarEvent>,
    /// Byte offset of a record cut short at the end of the file (a write interrupted by a
    /// crash), which TensorBoard ignores.
    pub truncated_at: Option<u64>,
}

/// The training loss and lr at one global step (0-based over the whole run), logged as
/// `step/loss` and `step/lr`; kept in checkpoints so that a resumed run can rewrite them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepScalars {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Seconds since the Unix epoch when the step was logged.
    pub wall_time: f64,
}

/// The scalars logged for an epoch, under the CSV's column names (the test columns too when
/// the run has them).
pub fn epoch_scalars(row: &EpochRow) -> Vec<(&'static str, f64)> {
    let test = [("test_loss", row.test_loss), ("test_accuracy", row.test_accuracy)];
    let mut scalars = vec![
        ("loss", row.loss),
        ("accuracy", row.accuracy),
        ("val_loss", row.val_loss),
        ("val_accuracy", row.val_accuracy),
        ("lr", row.lr),
        ("ce_loss", row.ce_loss),
        ("val_ce_loss", row.val_ce_loss),
        ("images_per_second", row.images_per_second),
    ];
    scalars.extend(test.into_iter().filter_map(|(tag, value)| Some((tag, value?))));
    scalars
}

/// Wall times for `rows` when only the end of the last one is known: each earlier row ends
/// the next row's `epoch_seconds` before it.
pub fn wall_times_ending_at(rows: &[EpochRow], end: f64) -> Vec<f64> {
    let mut times = vec![0.0; rows.len()];
    let mut time = end;
    for (slot, row) in times.iter_mut().zip(rows).rev() {
        *slot = time;
        time -= row.epoch_seconds;
    }
    times
}

// The protobuf messages: field numbers and types as in tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto. prost's derive also writes their Debug impls.

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    /// A oneof in summary.proto, so that 0.0 is written (a plain proto3 float 0.0 would not be,
    /// and readers would see no value at all).
    #[prost(oneof = "Kind", tags = "2")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// TFRecord's CRC: CRC32C, rotated and offset so that a CRC of bytes holding CRCs stays strong.
fn masked_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
fn record(event: &Event) -> Vec<u8> {
    let data = event.encode_to_vec();
    let length = (data.len() as u64).to_le_bytes();
    let mut bytes = Vec::with_capacity(data.len() + 16);
    bytes.extend_from_slice(&length);
    bytes.extend_from_slice(&masked_crc(&length).to_le_bytes());
    bytes.extend_from_slice(&data);
    bytes.extend_from_slice(&masked_crc(&data).to_le_bytes());
    bytes
}

fn version_record(wall_time: f64) -> Vec<u8> {
    record(&Event { wall_time, step: 0, what: Some(What::FileVersion(FILE_VERSION.to_string())) })
}

fn scalar_record(tag: &str, value: f64, step: i64, wall_time: f64) -> Vec<u8> {
    let value = Value { tag: tag.to_string(), kind: Some(Kind::SimpleValue(value as f32)) };
    record(&Event { wall_time, step, what: Some(What::Summary(Summary { value: vec![value] })) })
}

fn epoch_records(row: &EpochRow, wall_time: f64) -> Vec<u8> {
    epoch_scalars(row).iter().flat_map(|(tag, value)| scalar_record(tag, *value, row.epoch as i64, wall_time)).collect()
}

fn step_records(step: &StepScalars) -> Vec<u8> {
    [("step/loss", step.loss), ("step/lr", step.lr)]
        .iter()
        .flat_map(|(tag, value)| scalar_record(tag, *value, step.step as i64, step.wall_time))
        .collect()
}

/// The event files in `folder` (none when it does not exist), in name order.
pub fn event_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(folder) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        entries => entries.with_context(|| format!("cannot list {}", folder.display()))?,
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
        if entry.file_name().to_string_lossy().contains(INFIX) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A new log's name: now, or a second after the newest existing log (TensorBoard reads a run's
/// files in name order and takes a new name for a new file).
fn new_file_name(existing: &[PathBuf]) -> String {
    let seconds_of = |path: &PathBuf| -> Option<u64> {
        path.file_name()?.to_str()?.strip_prefix(PREFIX)?.split('.').next()?.parse().ok()
    };
    let newest = existing.iter().filter_map(seconds_of).max();
    let seconds = (clock::unix_seconds() as u64).max(newest.map_or(0, |s| s + 1));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = Some(host.trim()).filter(|h| !h.is_empty()).unwrap_or("localhost").to_string();
    format!("{PREFIX}{seconds:010}.{host}.resnext")
}

/// The one event log of a run folder, open for appending.
pub struct EventLog {
    path: PathBuf,
    file: std::fs::File,
    /// Bytes of whole records in the file.
    len: u64,
}

impl EventLog {
    /// Replaces every event file in `folder` (created if needed) with one holding exactly
    /// `rows` (at `epoch_wall_times`, one per row), then `steps`, and opens it for appending.
    /// Each tag's events are in the order given (TensorBoard expects its steps to increase;
    /// how tags interleave does not matter to it). The new file is in place before the old
    /// ones are removed: a crash in between leaves both, which the next rewrite (or `resnext
    /// tensorboard`) resolves.
    pub fn rewrite(folder: &Path, rows: &[EpochRow], epoch_wall_times: &[f64], steps: &[StepScalars]) -> Result<Self> {
        ensure!(
            rows.len() == epoch_wall_times.len(),
            "event log for {}: {} epochs but {} wall times",
            folder.display(),
            rows.len(),
            epoch_wall_times.len()
        );
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
        let old = event_files(folder)?;
        let path = folder.join(new_file_name(&old));
        let times = epoch_wall_times.iter().copied().chain(steps.iter().map(|s| s.wall_time));
        let start = times.reduce(f64::min).unwrap_or_else(clock::unix_seconds);
        let mut bytes = version_record(start);
        for (row, &time) in rows.iter().zip(epoch_wall_times) {
            bytes.extend(epoch_records(row, time));
        }
        bytes.extend(steps.iter().flat_map(step_records));
        atomic_file::write_atomic_via(&path, &folder.join(TEMP), "the TensorBoard event log", |tmp| {
            Ok(std::fs::write(tmp, &bytes)?)
        })?;
        for stale in old.iter().filter(|p| **p != path) {
            std::fs::remove_file(stale)
                .with_context(|| format!("cannot remove the old event log {}", stale.display()))?;
        }
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", folder.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        Ok(EventLog { path, file, len: bytes.len() as u64 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs an epoch's scalars at step `row.epoch`, logged at `wall_time`.
    pub fn append_epoch(&mut self, row: &EpochRow, wall_time: f64) -> Result<()> {
        self.append(&epoch_records(row, wall_time))
    }

    pub fn append_steps(&mut self, steps: &[StepScalars]) -> Result<()> {
        self.append(&steps.iter().flat_map(step_records).collect::<Vec<u8>>())
    }

    /// Appends whole records and syncs them. A failed write is cut off again, so that the next
    /// append does not follow half a record in the middle of the file.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let written = self.file.write_all(bytes).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let _ = self.file.set_len(self.len);
            return Err(error).with_context(|| format!("cannot append to the event log {}", self.path.display()));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Reads an event file's scalars, checking both CRCs of every record. A corrupt file is an
/// error naming it and the offset of the bad record; a record cut short at the end is not (see
/// [`EventFile::truncated_at`]).
pub fn read(path: &Path) -> Result<EventFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the event file {}", path.display()))?;
    let mut scalars = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let corrupt = |why: String| anyhow!("the event file {} is corrupt at byte {offset}: {why}", path.display());
        let rest = &bytes[offset..];
        if rest.len() < 12 {
            return Ok(EventFile { scalars, truncated_at: Some(offset as u64) });
        }
        let stored_crc = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
        if masked_crc(&rest[..8]) != stored_crc(8) {
            return Err(corrupt("the record length's CRC does not match".into()));
        }
        let length = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        // A length beyond the end (with a good CRC) is a record whose write was cut short.
        if length.checked_add(16).is_none_or(|whole| whole > rest.len() as u64) {
            return Ok(EventFile { scalars, truncated_at: Some(offset as u64) });
        }
        let data = &rest[12..12 + length as usize];
        if masked_crc(data) != stored_crc(12 + length as usize) {
            return Err(corrupt("the record's CRC does not match".into()));
        }
        let event = Event::decode(data).map_err(|e| corrupt(format!("the record is not an Event: {e}")))?;
        match event.what {
            Some(What::FileVersion(version)) if offset == 0 && version.starts_with("brain.Event:") => {}
            _ if offset == 0 => return Err(corrupt("the first record is not a brain.Event file_version".into())),
            Some(What::Summary(summary)) => {
                for value in summary.value {
                    if let Some(Kind::SimpleValue(v)) = value.kind {
                        let (step, wall_time) = (event.step, event.wall_time);
                        scalars.push(ScalarEvent { step, tag: value.tag, value: v, wall_time });
                    }
                }
            }
            _ => {}
        }
        offset += 16 + length as usize;
    }
    Ok(EventFile { scalars, truncated_at: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::metrics;

    /// Written by the `tensorboard` package's own TFRecord writer (tensorboard 2.21.0):
    /// ```python
    /// from tensorboard.summary.writer.record_writer import RecordWriter
    /// from tensorboard.compat.proto.event_pb2 import Event
    /// from tensorboard.compat.proto.summary_pb2 import Summary
    /// w = RecordWriter(open("ref.bin", "wb"))
    /// w.write(Event(wall_time=1700000000.25, file_version="brain.Event:2").SerializeToString())
    /// for t, step, tag, v in [(1.5, 0, "loss", 2.25), (2.5, 1, "accuracy", 0.0), (3.5, 781, "step/lr", 0.1)]:
    ///     w.write(Event(wall_time=1700000000 + t, step=step,
    ///                   summary=Summary(value=[Summary.Value(tag=tag, simple_value=v)])).SerializeToString())
    /// ```
    const REFERENCE: &str = "1800000000000000a37f4b220900001040fc54d9411a0d627261696e2e4576656e743a32338d2fe9\
        1800000000000000a37f4b220900006040fc54d9412a0d0a0b0a046c6f73731500001040124a3807\
        1e00000000000000d9dc1232090000a040fc54d94110012a110a0f0a08616363757261637915000000005e407adc\
        1e00000000000000d9dc1232090000e040fc54d941108d062a100a0e0a07737465702f6c7215cdcccc3d8389c21e";

    fn reference() -> Vec<u8> {
        (0..REFERENCE.len()).step_by(2).map(|i| u8::from_str_radix(&REFERENCE[i..i + 2], 16).unwrap()).collect()
    }

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            loss: 2.0 - 0.1 * epoch as f64,
            accuracy: 0.1 * epoch as f64,
            val_loss: 2.1,
            val_accuracy: 0.3,
            lr: 0.05,
            ce_loss: 1.9,
            val_ce_loss: 2.0,
            epoch_seconds: 10.0 + epoch as f64,
            images_per_second: 640.5,
            test_loss: None,
            test_accuracy: None,
        }
    }

    fn step(step: u64) -> StepScalars {
        StepScalars { step, loss: 2.5 / (1 + step) as f64, lr: 0.05, wall_time: 1_700_000_000.0 + step as f64 }
    }

    /// The scalars a file should hold for `rows` then `steps`.
    fn expected(rows: &[EpochRow], times: &[f64], steps: &[StepScalars]) -> Vec<ScalarEvent> {
        let scalar = |step: i64, tag: &str, value: f64, wall_time| ScalarEvent {
            step,
            tag: tag.to_string(),
            value: value as f32,
            wall_time,
        };
        rows.iter()
            .zip(times)
            .flat_map(|(r, &t)| epoch_scalars(r).into_iter().map(move |(tag, v)| scalar(r.epoch as i64, tag, v, t)))
            .chain(steps.iter().flat_map(|s| {
                [
                    scalar(s.step as i64, "step/loss", s.loss, s.wall_time),
                    scalar(s.step as i64, "step/lr", s.lr, s.wall_time),
                ]
            }))
            .collect()
    }

    #[test]
    fn masked_crc_matches_the_tfrecord_check_value() {
        // CRC32C("123456789") = 0xe3069283 (the standard check value), masked as TFRecord does;
        // tensorboard's masked_crc32c(b"123456789") gives the same.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn records_are_byte_identical_to_the_tensorboard_writer() {
        let t = 1_700_000_000.0;
        let mut ours = version_record(t + 0.25);
        ours.extend(scalar_record("loss", 2.25, 0, t + 1.5));
        ours.extend(scalar_record("accuracy", 0.0, 1, t + 2.5));
        ours.extend(scalar_record("step/lr", 0.1, 781, t + 3.5));
        assert_eq!(ours, reference());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.out.tfevents.reference");
        std::fs::write(&path, reference()).unwrap();
        let file = read(&path).unwrap();
        assert_eq!(file.truncated_at, None);
        let read: Vec<(i64, &str, f32, f64)> =
            file.scalars.iter().map(|e| (e.step, e.tag.as_str(), e.value, e.wall_time)).collect();
        assert_eq!(read, [(0, "loss", 2.25, t + 1.5), (1, "accuracy", 0.0, t + 2.5), (781, "step/lr", 0.1, t + 3.5)]);
    }

    #[test]
    fn epoch_scalars_are_the_csv_columns() {
        let with_test = EpochRow { test_loss: Some(2.2), test_accuracy: Some(0.29), ..row(0) };
        for (row, test_columns) in [(row(0), false), (with_test, true)] {
            let header = metrics::header(test_columns);
            let all: Vec<&str> = epoch_scalars(&row).iter().map(|(tag, _)| *tag).collect();
            for tag in &all {
                assert!(header.contains(tag), "{tag} is not a metrics.csv column");
            }
            let not_logged: Vec<&str> = header.into_iter().filter(|c| !all.contains(c)).collect();
            assert_eq!(not_logged, ["epoch", "epoch_seconds"], "the step and a timing are not scalars");
        }
    }

    #[test]
    fn reconstructed_wall_times_end_at_the_given_time_spaced_by_epoch_seconds() {
        let rows = [row(0), row(1), row(2)];
        assert_eq!(wall_times_ending_at(&rows, 1000.0), [1000.0 - 12.0 - 11.0, 1000.0 - 12.0, 1000.0]);
        assert!(wall_times_ending_at(&[], 1000.0).is_empty());
    }

    #[test]
    fn rewrite_then_append_reads_back_value_for_value() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("tensorboard");
        let rows = [row(0), row(1)];
        let times = wall_times_ending_at(&rows, 1_700_000_100.0);
        let steps = [step(0), step(20), step(40)];
        let mut log = EventLog::rewrite(&folder, &rows, &times, &steps).unwrap();
        assert_eq!(event_files(&folder).unwrap(), [log.path().to_path_buf()]);
        let name = log.path().file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with(PREFIX) && name.ends_with(".resnext"), "{name}");
        let file = read(log.path()).unwrap();
        assert_eq!(file.truncated_at, None);
        assert_eq!(file.scalars, expected(&rows, &times, &steps));
        assert_eq!(file.scalars.len(), 2 * 8 + 3 * 2);

        log.append_steps(&[step(60), step(80)]).unwrap();
        log.append_epoch(&row(2), 1_700_000_200.0).unwrap();
        let mut all = expected(&rows, &times, &steps);
        all.extend(expected(&[], &[], &[step(60), step(80)]));
        all.extend(expected(&[row(2)], &[1_700_000_200.0], &[]));
        assert_eq!(read(log.path()).unwrap().scalars, all);
        // The file_version event is at the earliest time in the file.
        let start = Event::decode(&std::fs::read(log.path()).unwrap()[12..40 - 4]).unwrap().wall_time;
        assert_eq!(start, times[0].min(step(0).wall_time));
    }

    #[test]
    fn rewrite_replaces_every_old_event_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_path_buf();
        let first = EventLog::rewrite(&folder, &[row(0), row(1)], &[1.0, 2.0], &[]).unwrap();
        let foreign = folder.join("events.out.tfevents.1000000000.otherhost.123.0");
        std::fs::write(&foreign, reference()).unwrap();
        std::fs::write(folder.join("notes.txt"), "kept").unwrap();
        let second = EventLog::rewrite(&folder, &[row(0)], &[1.0], &[step(3)]).unwrap();
        // TensorBoard reads a run's files in name order: the new one comes last.
        assert!(second.path() > first.path(), "{} after {}", second.path().display(), first.path().display());
        assert_eq!(event_files(&folder).unwrap(), [second.path().to_path_buf()]);
        let mut names: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        names.sort();
        assert_eq!(names, [second.path().file_name().unwrap().to_string_lossy().to_string(), "notes.txt".to_string()]);
        assert_eq!(read(second.path()).unwrap().scalars, expected(&[row(0)], &[1.0], &[step(3)]));
        let empty = EventLog::rewrite(&folder, &[], &[], &[]).unwrap();
        assert_eq!(read(empty.path()).unwrap().scalars, []);
        assert!(EventLog::rewrite(&folder, &[row(0)], &[], &[]).is_err(), "a wall time per row");
    }

    #[test]
    fn a_corrupt_record_is_refused_with_the_file_and_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.out.tfevents.test");
        // The reference file's records start at bytes 0, 40, 80 and 126.
        let cases = [
            (40 + 3, 40, "the record length's CRC does not match"),
            (40 + 9, 40, "the record length's CRC does not match"),
            (40 + 14, 40, "the record's CRC does not match"),
            (171, 126, "the record's CRC does not match"),
        ];
        for (byte, record, why) in cases {
            let mut bytes = reference();
            bytes[byte] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let message = format!("{:#}", read(&path).unwrap_err());
            let wanted = format!("the event file {} is corrupt at byte {record}: {why}", path.display());
            assert_eq!(message, wanted, "byte {byte} flipped");
        }
        // Framing intact, content not an event file.
        std::fs::write(&path, record_bytes(b"\xff\xff\xff")).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("at byte 0: the record is not an Event"));
        std::fs::write(&path, scalar_record("loss", 1.0, 0, 1.0)).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("the first record is not a brain.Event"));
    }

    /// A record around arbitrary bytes.
    fn record_bytes(data: &[u8]) -> Vec<u8> {
        let length = (data.len() as u64).to_le_bytes();
        [&length[..], &masked_crc(&length).to_le_bytes(), data, &masked_crc(data).to_le_bytes()].concat()
    }

    #[test]
    fn a_record_cut_short_at_the_end_is_reported_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.out.tfevents.test");
        let whole = reference();
        let last = 126;
        let before_last = read_bytes(&path, &whole[..last]).scalars;
        assert_eq!(before_last.len(), 2);
        assert_eq!(read_bytes(&path, &whole[..last]).truncated_at, None);
        for cut in last + 1..whole.len() {
            let file = read_bytes(&path, &whole[..cut]);
            assert_eq!((file.scalars, file.truncated_at), (before_last.clone(), Some(last as u64)), "cut at {cut}");
        }
        assert_eq!(read_bytes(&path, &whole).truncated_at, None);
        assert_eq!(read_bytes(&path, b"").scalars, []);
    }

    fn read_bytes(path: &Path, bytes: &[u8]) -> EventFile {
        std::fs::write(path, bytes).unwrap();
        read(path).unwrap()
    }
}
