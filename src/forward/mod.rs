//! Node-to-node forwarding: the wire protocol (`protocol`, no I/O), the master's server and the
//! forwarder client that ships a spool to the master.

pub mod protocol;
