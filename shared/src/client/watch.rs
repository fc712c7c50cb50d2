//! A value that can be read now and awaited for changes, without a runtime.
//!
//! The client core must run on tokio (tools, tests) and in a browser's event
//! loop alike, so it cannot use `tokio::sync::watch`. This one keeps the
//! value, a version, and the wakers of whoever waits for the next version;
//! the lock is never held across an `.await`.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures_util::Stream;

/// A shared, observable value. Clones observe the same value.
#[derive(Debug)]
pub struct Watch<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

#[derive(Debug)]
struct Inner<T> {
    value: T,
    version: u64,
    wakers: Vec<Waker>,
}

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone> Watch<T> {
    pub fn new(value: T) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                value,
                version: 0,
                wakers: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic while holding this lock cannot leave the value half-written
        // (every write is one assignment), so a poisoned lock is still good.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current value.
    pub fn get(&self) -> T {
        self.lock().value.clone()
    }

    /// The current value and its version.
    pub fn get_versioned(&self) -> (T, u64) {
        let inner = self.lock();
        (inner.value.clone(), inner.version)
    }

    /// Replaces the value and wakes everyone waiting for a change.
    pub fn set(&self, value: T) {
        let wakers = {
            let mut inner = self.lock();
            inner.value = value;
            inner.version += 1;
            std::mem::take(&mut inner.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Waits until the version is past `seen`, and returns the value then.
    pub async fn changed_since(&self, seen: u64) -> (T, u64) {
        poll_fn(|cx| {
            let mut inner = self.lock();
            if inner.version != seen {
                return Poll::Ready((inner.value.clone(), inner.version));
            }
            if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                inner.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The current value, then every later one (intermediate values may be
    /// skipped when they change faster than the stream is read).
    pub fn stream(&self) -> impl Stream<Item = T> + use<T> {
        let watch = self.clone();
        futures_util::stream::unfold(None, move |seen| {
            let watch = watch.clone();
            async move {
                let (value, version) = match seen {
                    None => watch.get_versioned(),
                    Some(seen) => watch.changed_since(seen).await,
                };
                Some((value, Some(version)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn stream_yields_current_then_changes() {
        let w = Watch::new(1);
        let mut s = Box::pin(w.stream());
        assert_eq!(s.next().await, Some(1));
        let w2 = w.clone();
        let task = tokio::spawn(async move { s.next().await });
        tokio::task::yield_now().await;
        w2.set(2);
        assert_eq!(task.await.unwrap(), Some(2));
        assert_eq!(w.get_versioned(), (2, 1));
    }
}
