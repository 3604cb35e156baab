//! Every task the lab, a role or the monitor spawns, tracked by name ([`Tasks`]), so that
//! shutdown can wait for all of them and say which one did not end in time.
//!
//! A [`TaskTracker`] (tokio-util) does the counting and the waiting; what this adds is a
//! name per task (the log line of a task that outlives the grace period says what it was)
//! and nesting: a role runs in a [`Tasks::child`] of the lab's group, so the role can wait
//! for its own connections when it stops (and its port is free for a restart) while the lab
//! still sees, and waits for, every task of every role.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// How long a stopping lab or role waits for its tasks before it gives up on them (and
/// logs their names): they all watch a cancelled token, so they normally end at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A group of tracked tasks; cloning it gives another handle on the same group.
#[derive(Clone, Default)]
pub struct Tasks {
    group: Arc<Group>,
}

#[derive(Default)]
struct Group {
    tracker: TaskTracker,
    /// How many tasks of each name are running.
    live: Mutex<BTreeMap<&'static str, usize>>,
    /// The group this one is part of: its tasks count there too.
    parent: Option<Tasks>,
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.running())
            .finish()
    }
}

/// Holds one task's place in one group: dropped when the task ends (or is aborted).
struct Membership {
    _token: TaskTrackerToken,
    group: Arc<Group>,
    name: &'static str,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut live = self.group.live.lock().unwrap();
        if let Some(count) = live.get_mut(self.name) {
            *count -= 1;
            if *count == 0 {
                live.remove(self.name);
            }
        }
    }
}

/// The tasks that were still running when a group stopped waiting for them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftover(pub Vec<(&'static str, usize)>);

impl Leftover {
    /// Whether every task ended.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Leftover {
    /// `proxy1 client ×2, link timer`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, count)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
            if *count > 1 {
                write!(f, " ×{count}")?;
            }
        }
        Ok(())
    }
}

impl Tasks {
    /// A new, empty group of its own.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// A group inside this one: its tasks are tracked here as well, so waiting on this group
    /// waits for them too, while the child can be closed and waited for on its own.
    pub fn child(&self) -> Tasks {
        Tasks {
            group: Arc::new(Group {
                parent: Some(self.clone()),
                ..Group::default()
            }),
        }
    }

    /// Spawns `future` on the runtime as a task of this group (and of its parents), under
    /// `name`.
    pub fn spawn<F>(&self, name: &'static str, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let memberships = self.join(name);
        tokio::spawn(async move {
            let _memberships = memberships;
            future.await
        })
    }

    /// One membership per group up the chain.
    fn join(&self, name: &'static str) -> Vec<Membership> {
        let mut memberships = Vec::new();
        let mut group = Some(self);
        while let Some(tasks) = group {
            *tasks.group.live.lock().unwrap().entry(name).or_default() += 1;
            memberships.push(Membership {
                _token: tasks.group.tracker.token(),
                group: tasks.group.clone(),
                name,
            });
            group = tasks.group.parent.as_ref();
        }
        memberships
    }

    /// How many tasks of this group are running.
    pub fn len(&self) -> usize {
        self.group.tracker.len()
    }

    /// Whether no task of this group is running.
    pub fn is_empty(&self) -> bool {
        self.group.tracker.is_empty()
    }

    /// The names of the running tasks, with how many run under each.
    pub fn running(&self) -> Leftover {
        let live = self.group.live.lock().unwrap();
        Leftover(live.iter().map(|(name, count)| (*name, *count)).collect())
    }

    /// Waits, at most `grace`, for every task of the group to end (the caller has cancelled
    /// them first). Returns those that did not: they keep running, and a process that exits
    /// ends them. The group still takes new tasks afterwards (a role restarted in the lab).
    pub async fn wait(&self, grace: Duration) -> Leftover {
        let tracker = &self.group.tracker;
        tracker.close();
        let ended = tokio::time::timeout(grace, tracker.wait()).await.is_ok();
        tracker.reopen();
        if ended {
            Leftover::default()
        } else {
            self.running()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn waits_for_every_task_and_names_the_ones_that_do_not_end() {
        let lab = Tasks::new();
        let role = lab.child();
        let stop = CancellationToken::new();
        for _ in 0..2 {
            let stop = stop.clone();
            role.spawn("client", async move { stop.cancelled().await });
        }
        let stuck = lab.spawn("stuck", std::future::pending::<()>());
        assert_eq!(lab.len(), 3);
        assert_eq!(role.len(), 2);
        assert_eq!(lab.running().to_string(), "client ×2, stuck");

        stop.cancel();
        assert!(role.wait(Duration::from_secs(5)).await.is_empty());
        assert!(role.is_empty());
        let left = lab.wait(Duration::from_millis(50)).await;
        assert_eq!(left, Leftover(vec![("stuck", 1)]));

        stuck.abort();
        let _ = stuck.await;
        assert!(lab.is_empty());
        assert!(lab.running().is_empty());
    }
}
