//! The threads that decode, resize and encode images. They run at a lower CPU priority
//! (nice 10) than the rest of the node, so on a busy machine an upload storm slows the
//! uploads, not the chat: the shards' threads win the CPU whenever they have work.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How much less CPU priority image work gets (Linux nice, 0 = the node's, 19 = the least).
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct ImageWorkers {
    jobs: SyncSender<Job>,
}

impl ImageWorkers {
    /// `threads` workers and a queue as long (callers hold a permit of the same count, so the
    /// queue never fills).
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(threads.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("parley-image-{i}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a worker; its result, or None if the job panicked (or, against the
    /// permits' rule, found the queue full).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        // Callers hold one of `threads` permits, so at most `threads` jobs are queued or
        // running: the queue (as long) never refuses one.
        self.jobs.try_send(job).ok()?;
        rx.await.ok()
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    // Only this thread (Linux: a thread id names the thread). Unprivileged, a process may
    // lower its threads' priority, never raise it: there is nothing to undo.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::warn!(error = %e, "image worker keeps the node's CPU priority");
    }
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        // A panicking decoder takes its job's answer with it, not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_workers_at_a_lower_priority() {
        let workers = ImageWorkers::start(2).unwrap();
        let (name, nice) = workers
            .run(|| {
                let tid = rustix::thread::gettid();
                let nice = rustix::process::getpriority_process(Some(tid)).unwrap();
                (std::thread::current().name().map(str::to_owned), nice)
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("parley-image-"));
        assert!(nice >= NICE, "nice {nice}");
        // A job that panics loses its answer; the worker goes on.
        assert_eq!(workers.run(|| -> u8 { panic!("bad image") }).await, None);
        assert_eq!(workers.run(|| 7).await, Some(7));
        assert_eq!(workers.run(|| 8).await, Some(8));
    }
}
