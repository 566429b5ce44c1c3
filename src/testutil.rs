//! Helpers every unit-test module shares (compiled for tests only). It holds the one
//! `wait_until` of the unit tests; the end-to-end tests have their own in `tests/it/sandbox.rs`
//! because they cannot see this crate's test code. Nothing here may be used outside tests.

use std::time::{Duration, Instant};

/// Polls `predicate` until it holds or `timeout` passes (real time: the deadline is a
/// `std` instant, so a paused tokio clock cannot end the wait early); returns whether it held.
/// The predicate is checked once more after the deadline. Polls start at 1 ms and back off to
/// 10 ms, so a quick condition is seen at once and a slow one costs little CPU.
///
/// Callers assert the result with a message that shows the state they waited on, e.g.
/// `assert!(wait_until(T, || hwm() == 10).await, "hwm {}", hwm())`: that names what did not
/// happen and what happened instead, which a panic inside the helper could not.
pub(crate) async fn wait_until(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// [`wait_until`] for synchronous tests (a blocking thread, no runtime): the same deadline,
/// polls and result.
pub(crate) fn wait_until_blocking(timeout: Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if predicate() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Asserts that `text` (a rendered `/metrics` page, a log) has each of `lines` as a whole
/// line; the failure names the missing line and shows the text.
#[track_caller]
pub(crate) fn assert_has_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_predicate_holds_and_false_past_the_deadline() {
        let mut calls = 0;
        let held = wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        })
        .await;
        assert!(held);
        assert_eq!(calls, 3);

        let started = Instant::now();
        let mut calls = 0;
        let held = wait_until(Duration::from_millis(50), || {
            calls += 1;
            false
        })
        .await;
        assert!(!held);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(calls >= 2, "checked {calls} times");
    }
}
