//! A query request as the API's query string and `starling read`'s flags give it: the filter
//! (`filter.rs`) plus `limit`, `order`, `cursor`, `format` and `exact`, and for the live tail
//! `backfill`. Unknown parameter names are refused, so a typo is not silently ignored.

use chrono::{DateTime, Utc};

use super::filter::{Filter, ParamError};
use super::output::Format;
use super::scan::{Cursor, Order, Query};

/// The parameter names `/v1/logs` accepts.
pub const LOGS_PARAMS: &[&str] = &[
    "since",
    "until",
    "source",
    "app",
    "severity",
    "contains",
    "case-sensitive",
    "regex",
    "transport",
    "limit",
    "order",
    "cursor",
    "format",
    "exact",
];

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub query: Query,
    pub format: Format,
    /// `backfill` (tail only): how many of the newest records to send first.
    pub backfill: u64,
}

/// Largest `backfill` of a tail.
pub const MAX_BACKFILL: u64 = 100_000;

/// Parses `pairs` (names as in [`LOGS_PARAMS`], plus those in `extra`, which the caller
/// reads itself). `now` anchors relative times.
pub fn parse_request(
    pairs: &[(String, String)],
    extra: &[&str],
    now: DateTime<Utc>,
) -> Result<Request, ParamError> {
    for (name, _) in pairs {
        if !LOGS_PARAMS.contains(&name.as_str()) && !extra.contains(&name.as_str()) {
            return Err(ParamError::new(
                name,
                format!(
                    "unknown parameter; known: {}",
                    LOGS_PARAMS
                        .iter()
                        .chain(extra)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let filter = Filter::from_params(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())), now)?;
    let mut query = Query::new(filter);
    let mut format = Format::Json;
    let mut exact = false;
    let mut backfill = 0;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                query.limit = value.parse().map_err(|_| {
                    ParamError::new(
                        "limit",
                        format!(
                            "{value:?} is not a count from 0 (everything) to {}",
                            u64::MAX
                        ),
                    )
                })?
            }
            "order" => {
                query.order = match value.as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    other => {
                        return Err(ParamError::new(
                            "order",
                            format!("{other:?} is not asc or desc"),
                        ))
                    }
                }
            }
            "cursor" => query.cursor = Some(Cursor::decode(value)?),
            "format" => {
                format = match value.as_str() {
                    "json" | "ndjson" => Format::Json,
                    "raw" => Format::Raw { exact: false },
                    other => {
                        return Err(ParamError::new(
                            "format",
                            format!("{other:?} is not json or raw"),
                        ))
                    }
                }
            }
            "exact" => {
                exact = match value.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ParamError::new(
                            "exact",
                            format!("{other:?} is not true or false"),
                        ))
                    }
                }
            }
            "backfill" => {
                backfill = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_BACKFILL)
                    .ok_or_else(|| {
                        ParamError::new(
                            "backfill",
                            format!("{value:?} is not a count from 0 to {MAX_BACKFILL}"),
                        )
                    })?
            }
            _ => {}
        }
    }
    if exact {
        match format {
            Format::Raw { .. } => format = Format::Raw { exact: true },
            Format::Json => {
                return Err(ParamError::new("exact", "applies to format=raw only"));
            }
        }
    }
    Ok(Request {
        query,
        format,
        backfill,
    })
}

/// Splits a URL query string into decoded pairs, bounded: at most `MAX_PAIRS` pairs.
pub fn query_pairs(raw_query: Option<&str>) -> Result<Vec<(String, String)>, ParamError> {
    const MAX_PAIRS: usize = 256;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .take(MAX_PAIRS + 1)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > MAX_PAIRS {
        return Err(ParamError::new(
            "query",
            format!("more than {MAX_PAIRS} parameters"),
        ));
    }
    Ok(pairs)
}
