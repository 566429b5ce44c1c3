//! Querying stored records: one filter (`filter`), one request parser (`request`), one scan
//! engine (`scan`) and one output writer (`output`) shared by `starling read` and the API's
//! `GET /v1/logs` (`http`), so the offline reader and the API cannot disagree.
//!
//! Imports `store` (reading side only), `parse`, `journal`, `render`, `record` and
//! `timespec`; never the writer. Inside: `http` → `request` → `scan` → `filter`;
//! `output` → `filter`, `scan`.

pub mod filter;
pub mod http;
pub mod output;
pub mod request;
pub mod scan;

pub use filter::{Filter, Hit, ParamError};
pub use output::Format;
pub use request::{parse_request, query_pairs, Request};
pub use scan::{run, Cursor, Order, Query, Summary};
