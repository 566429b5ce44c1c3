//! Running a query over a store: the records the filter keeps, in `(received_at, origin,
//! seq)` order (ascending or descending), up to a limit, resumable after a cursor.
//!
//! A shard's records are in append order, which is not receive-time order (a spool forwards
//! records received minutes ago next to new ones), so the scan works in receive-time windows:
//! each window is read (sealed segments and frames outside it are skipped by their footer,
//! time index and frame header), its matching records are sorted by key and handed out, and
//! the next window follows. A window whose matches would pass `window_max_bytes` is cut at
//! the median receive time of what it held and read again, so memory stays bounded whatever
//! the store holds; windows that hold little grow. The order, and so the cursor, depends only
//! on the records, not on which store holds them.

use std::cmp::Ordering;
use std::sync::Arc;

use base64::Engine as _;

use super::filter::{Filter, Hit, ParamError};
use crate::store::{ReadError, ReadOptions, StoreReader};

/// Where a query stopped: the key of the last record handed out. Opaque to clients
/// (URL-safe base64); the same in every store that holds the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: i64,
    pub origin: Arc<str>,
    pub seq: u64,
}

impl Cursor {
    pub fn of(hit: &Hit) -> Cursor {
        let record = &hit.stored.record;
        Cursor {
            received_at: record.received_at_micros,
            origin: record.origin.clone(),
            seq: record.origin_seq,
        }
    }

    pub fn encode(&self) -> String {
        let text = format!("{}.{}.{}", self.received_at, self.seq, self.origin);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(text: &str) -> Result<Cursor, ParamError> {
        let bad = || ParamError::new("cursor", "not a cursor this API handed out");
        if text.len() > 1024 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, '.');
        let (Some(at), Some(seq), Some(origin)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(Cursor {
            received_at: at.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
            origin: Arc::from(origin),
        })
    }
}

/// The order records are handed out in.
pub fn key_order(a: &Hit, b: &Hit) -> Ordering {
    let (a, b) = (&a.stored.record, &b.stored.record);
    (a.received_at_micros, &*a.origin, a.origin_seq).cmp(&(
        b.received_at_micros,
        &*b.origin,
        b.origin_seq,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Default bound of the matches one window holds in memory.
pub const WINDOW_MAX_BYTES: usize = 32 << 20;

/// A query: the filter, how many records (0 = all), the order and where to resume.
#[derive(Debug, Clone)]
pub struct Query {
    pub filter: Filter,
    pub limit: u64,
    pub order: Order,
    pub cursor: Option<Cursor>,
    pub window_max_bytes: usize,
}

impl Query {
    pub fn new(filter: Filter) -> Query {
        Query {
            filter,
            limit: 0,
            order: Order::Asc,
            cursor: None,
            window_max_bytes: WINDOW_MAX_BYTES,
        }
    }
}

/// How many corrupt-frame or I/O messages a summary keeps (the counts are complete).
const MAX_PROBLEMS: usize = 16;

/// What a finished (or stopped) query did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read and tested against the filter (a record in a window read twice counts
    /// twice: this is the work done).
    pub scanned: u64,
    pub returned: u64,
    /// Frames whose CRC or contents were bad (skipped; the rest was read).
    pub corrupt: u64,
    /// Files that could not be opened or read.
    pub unreadable: u64,
    /// The first messages about them.
    pub problems: Vec<String>,
    /// Resume after this (the last record handed out, or the cursor the query was given).
    pub cursor: Option<Cursor>,
    /// The whole range was read (false when the limit stopped it or it was cancelled).
    pub complete: bool,
    /// The caller stopped it (a client went away).
    pub cancelled: bool,
}

impl Summary {
    fn problem(&mut self, error: ReadError) {
        match error {
            ReadError::Corrupt { .. } => self.corrupt += 1,
            ReadError::Io { .. } => self.unreadable += 1,
        }
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(error.to_string());
        }
    }
}

/// One window's outcome.
enum Window {
    Done {
        hits: Vec<Hit>,
        bounds: Option<(i64, i64)>,
    },
    Overflow(Vec<Hit>),
    Cancelled,
}

/// Runs `query` on `reader`, handing each record to `emit` in order (`emit` returns false to
/// stop: the client went away). `stop` is asked every few thousand records scanned, so a
/// scan that matches nothing still notices that nobody waits for it.
pub fn run(
    reader: &StoreReader,
    query: &Query,
    stop: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&Hit) -> bool,
) -> Summary {
    let mut summary = Summary {
        cursor: query.cursor.clone(),
        ..Summary::default()
    };
    let filter = &query.filter;
    let mut lo = filter.since.unwrap_or(i64::MIN);
    let mut hi = filter.until.unwrap_or(i64::MAX);
    if let Some(cursor) = &query.cursor {
        match query.order {
            Order::Asc => lo = lo.max(cursor.received_at),
            Order::Desc => hi = hi.min(cursor.received_at.saturating_add(1)),
        }
    }
    let cap = query.window_max_bytes.max(1);
    // The window being read: [a, b). `width` (None: the whole rest) places the next window
    // after (before) the last one; `fixed` keeps the bounds an overflow just set.
    let mut width: Option<i64> = None;
    let mut fixed = false;
    let mut capped = true;
    let (mut a, mut b) = (lo, hi);
    while lo < hi {
        if !fixed {
            match query.order {
                Order::Asc => b = width.map_or(hi, |w| a.saturating_add(w).min(hi)),
                Order::Desc => a = width.map_or(lo, |w| b.saturating_sub(w).max(lo)),
            }
        }
        fixed = false;
        match scan_window(
            reader,
            query,
            a,
            b,
            capped.then_some(cap),
            &mut summary,
            stop,
        ) {
            Window::Cancelled => {
                summary.cancelled = true;
                return summary;
            }
            Window::Overflow(mut held) => {
                held.sort_unstable_by_key(|hit| hit.stored.record.received_at_micros);
                let median = held[held.len() / 2].stored.record.received_at_micros;
                fixed = true;
                match query.order {
                    Order::Asc if median > a => b = median,
                    Order::Desc if median.saturating_add(1) < b => a = median + 1,
                    // Half of what it held was received in the window's first (last)
                    // microsecond: read that microsecond whole.
                    Order::Asc => {
                        b = a + 1;
                        capped = false;
                    }
                    Order::Desc => {
                        a = b - 1;
                        capped = false;
                    }
                }
                continue;
            }
            Window::Done { mut hits, bounds } => {
                let held_bytes: usize = hits.iter().map(hit_bytes).sum();
                match query.order {
                    Order::Asc => hits.sort_unstable_by(key_order),
                    Order::Desc => hits.sort_unstable_by(|x, y| key_order(y, x)),
                }
                for hit in &hits {
                    if query.limit > 0 && summary.returned >= query.limit {
                        return summary;
                    }
                    if !emit(hit) {
                        summary.cancelled = true;
                        return summary;
                    }
                    summary.returned += 1;
                    summary.cursor = Some(Cursor::of(hit));
                }
                let done_width = b.saturating_sub(a);
                match query.order {
                    Order::Asc => {
                        lo = b;
                        a = b;
                    }
                    Order::Desc => {
                        hi = a;
                        b = a;
                    }
                }
                // Nothing outside what this read saw exists (as of the read).
                match bounds {
                    None => break,
                    Some((min, max)) => {
                        lo = lo.max(min);
                        hi = hi.min(max.saturating_add(1));
                        a = a.max(lo);
                        b = b.min(hi);
                    }
                }
                capped = true;
                width = Some(if held_bytes < cap / 4 {
                    done_width.saturating_mul(2)
                } else {
                    done_width.max(1)
                });
            }
        }
    }
    summary.complete = !(query.limit > 0 && summary.returned >= query.limit);
    summary
}

fn hit_bytes(hit: &Hit) -> usize {
    hit.stored.record.raw.len() + 128
}

fn scan_window(
    reader: &StoreReader,
    query: &Query,
    a: i64,
    b: i64,
    cap: Option<usize>,
    summary: &mut Summary,
    stop: &dyn Fn() -> bool,
) -> Window {
    let options = ReadOptions {
        source: None,
        since_micros: (a > i64::MIN).then_some(a),
        until_micros: (b < i64::MAX).then_some(b),
    };
    let filter = &query.filter;
    let mut iter = reader.read_where(&options, |source| filter.source_matches(source));
    let mut hits = Vec::new();
    let mut bytes = 0usize;
    for item in iter.by_ref() {
        let stored = match item {
            Ok(stored) => stored,
            Err(error) => {
                summary.problem(error);
                continue;
            }
        };
        summary.scanned += 1;
        if summary.scanned % 2048 == 0 && stop() {
            return Window::Cancelled;
        }
        if let Some(cursor) = &query.cursor {
            let after = match query.order {
                Order::Asc => Ordering::Greater,
                Order::Desc => Ordering::Less,
            };
            let record = &stored.record;
            let key = (
                record.received_at_micros,
                &*record.origin,
                record.origin_seq,
            );
            if key.cmp(&(cursor.received_at, &*cursor.origin, cursor.seq)) != after {
                continue;
            }
        }
        if let Some(hit) = filter.check(stored) {
            bytes += hit_bytes(&hit);
            hits.push(hit);
            if cap.is_some_and(|cap| bytes > cap) && hits.len() > 1 {
                return Window::Overflow(hits);
            }
        }
    }
    Window::Done {
        hits,
        bounds: iter.recv_bounds_seen(),
    }
}
