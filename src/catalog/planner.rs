//! The catalog's decisions, with no I/O and no clock of its own (the caller hands in the time):
//! which entries changed, when each has settled, which to look at next and in what batches, and
//! whether a finished job's result still stands.
//!
//! An entry is looked at once it has been unchanged for the settle time. Settled entries go out
//! oldest change first, up to `batch` to a job, at most `max_jobs` jobs at once; a job that ends
//! frees its slot at once, so publishing runs at the speed of hashing. A change seen while an
//! entry's job runs makes that job's result for it void: the entry is looked at again.
//!
//! An entry with a file some process wrote to and has not closed yet (inotify's `IN_MODIFY`
//! without its `IN_CLOSE_WRITE`) is not looked at, however long the writer pauses: a copy that
//! stalls for longer than the settle time is not published half-written. The settle time
//! counts from the close.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub type JobId = u64;

/// Entries handed to one job, looked at in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    pub id: JobId,
    pub names: Vec<String>,
    pub started: Instant,
}

#[derive(Debug)]
pub struct Planner {
    settle: Duration,
    max_jobs: usize,
    batch: usize,
    /// Entries with a change not yet looked at, and when it was last seen.
    dirty: HashMap<String, Instant>,
    /// Entries being looked at, by job.
    running: HashMap<String, JobId>,
    jobs: HashMap<JobId, Instant>,
    next_id: JobId,
    /// Files written to and not closed yet, by entry.
    writing: HashMap<String, HashSet<PathBuf>>,
}

impl Planner {
    pub fn new(settle: Duration, max_jobs: usize, batch: usize) -> Planner {
        Planner {
            settle,
            max_jobs: max_jobs.max(1),
            batch: batch.max(1),
            dirty: HashMap::new(),
            running: HashMap::new(),
            jobs: HashMap::new(),
            next_id: 1,
            writing: HashMap::new(),
        }
    }

    /// A process wrote to `path`, a file of entry `name`, at `now`: it holds the file open for
    /// writing until `closed` is told.
    pub fn wrote(&mut self, name: &str, path: &Path, now: Instant) {
        match self.writing.get_mut(name) {
            Some(paths) => {
                if !paths.contains(path) {
                    paths.insert(path.to_owned());
                }
            }
            None => {
                self.writing
                    .insert(name.to_owned(), HashSet::from([path.to_owned()]));
            }
        }
        self.changed(name, now);
    }

    /// `path` of entry `name` was closed after writing, or is gone (deleted, renamed away): its
    /// writer no longer holds the entry back. The entry settles from `now`.
    pub fn closed(&mut self, name: &str, path: &Path, now: Instant) {
        if let Some(paths) = self.writing.get_mut(name) {
            paths.remove(path);
            if paths.is_empty() {
                self.writing.remove(name);
            }
        }
        self.changed(name, now);
    }

    /// Forgets every writer: watch events were lost, so a close may have been missed (an entry
    /// held forever would never be published).
    pub fn clear_writers(&mut self) {
        self.writing.clear();
    }

    /// Whether a process still has a file of `name` open for writing.
    pub fn being_written(&self, name: &str) -> bool {
        self.writing.contains_key(name)
    }

    /// `name` changed at `now` (a watch event, or found to need a look at start).
    pub fn changed(&mut self, name: &str, now: Instant) {
        match self.dirty.get_mut(name) {
            Some(t) => *t = now,
            None => {
                self.dirty.insert(name.to_owned(), now);
            }
        }
    }

    /// `name` should be looked at as soon as a job is free, without waiting to settle (it was
    /// handed back unlooked-at by a job that ran long).
    pub fn due_now(&mut self, name: &str, now: Instant) {
        let settled = now.checked_sub(self.settle).unwrap_or(now);
        self.dirty.entry(name.to_owned()).or_insert(settled);
    }

    /// The jobs to start at `now`: settled entries that no job is looking at, oldest change
    /// first, `batch` to a job, while fewer than `max_jobs` run.
    pub fn start(&mut self, now: Instant) -> Vec<PlannedJob> {
        let free = self.max_jobs.saturating_sub(self.jobs.len());
        if free == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(&String, &Instant)> = self
            .dirty
            .iter()
            .filter(|(name, last)| {
                now.saturating_duration_since(**last) >= self.settle
                    && !self.running.contains_key(*name)
                    && !self.writing.contains_key(*name)
            })
            .collect();
        // The oldest `free * batch` in order, without sorting all of them (there may be 100,000).
        let want = (free * self.batch).min(ready.len());
        let order = |a: &(&String, &Instant), b: &(&String, &Instant)| {
            a.1.cmp(b.1).then_with(|| a.0.cmp(b.0))
        };
        if want < ready.len() && want > 0 {
            ready.select_nth_unstable_by(want - 1, order);
        }
        ready.truncate(want);
        ready.sort_by(order);
        let names: Vec<String> = ready.into_iter().map(|(n, _)| n.clone()).collect();
        let mut out = Vec::new();
        for chunk in names.chunks(self.batch) {
            let id = self.next_id;
            self.next_id += 1;
            for name in chunk {
                self.dirty.remove(name);
                self.running.insert(name.clone(), id);
            }
            self.jobs.insert(id, now);
            out.push(PlannedJob {
                id,
                names: chunk.to_vec(),
                started: now,
            });
        }
        out
    }

    /// Job `job` ended. For each of its entries, whether its result stands: it does not when
    /// the entry changed again after the job started (it is then still dirty, to be looked at
    /// once more).
    pub fn finished(&mut self, job: &PlannedJob) -> Vec<(String, bool)> {
        self.jobs.remove(&job.id);
        job.names
            .iter()
            .map(|name| {
                if self.running.get(name) == Some(&job.id) {
                    self.running.remove(name);
                }
                let stands = self.dirty.get(name).is_none_or(|t| *t <= job.started);
                (name.clone(), stands)
            })
            .collect()
    }

    /// When the earliest waiting entry settles, if any waits and a job slot is free to take it
    /// (for the caller's timer; a job ending is the other wake-up).
    pub fn next_due(&self) -> Option<Instant> {
        if self.jobs.len() >= self.max_jobs {
            return None;
        }
        self.dirty
            .iter()
            .filter(|(name, _)| {
                !self.running.contains_key(*name) && !self.writing.contains_key(*name)
            })
            .map(|(_, t)| *t + self.settle)
            .min()
    }

    /// Entries waiting for a look, oldest change first (the first is next), with none running.
    pub fn queue(&self) -> Vec<&str> {
        let mut waiting: Vec<(&String, &Instant)> = self
            .dirty
            .iter()
            .filter(|(name, _)| !self.running.contains_key(*name))
            .collect();
        waiting.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
        waiting.into_iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Whether `name` is waiting or being looked at.
    pub fn pending(&self, name: &str) -> bool {
        self.dirty.contains_key(name) || self.running.contains_key(name)
    }

    pub fn running_jobs(&self) -> usize {
        self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(2);

    fn names(jobs: &[PlannedJob]) -> Vec<Vec<&str>> {
        jobs.iter()
            .map(|j| j.names.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn entries_wait_to_settle_and_go_oldest_first_in_batches() {
        let t0 = Instant::now();
        let mut p = Planner::new(S, 2, 3);
        for (i, n) in ["e", "d", "c", "b", "a"].iter().enumerate() {
            p.changed(n, t0 + Duration::from_millis(i as u64));
        }
        // Nothing has settled yet; the timer is told when the first will.
        assert!(p.start(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(p.next_due(), Some(t0 + S));
        // A change pushes an entry's turn back.
        p.changed("e", t0 + Duration::from_secs(1));
        let jobs = p.start(t0 + Duration::from_millis(2100));
        assert_eq!(names(&jobs), vec![vec!["d", "c", "b"], vec!["a"]]);
        assert_eq!(p.running_jobs(), 2);
        assert_eq!(p.queue(), vec!["e"]);
        // Both job slots are taken: e waits though it has settled, and no timer is due (a job
        // ending is what starts it).
        assert!(p.start(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(p.next_due(), None);
        // A job ending frees its slot at once.
        assert_eq!(p.finished(&jobs[1]), vec![("a".to_owned(), true)]);
        assert_eq!(
            names(&p.start(t0 + Duration::from_secs(4))),
            vec![vec!["e"]]
        );
        assert!(p.queue().is_empty());
    }

    #[test]
    fn a_change_during_a_job_voids_its_result_for_that_entry() {
        let t0 = Instant::now();
        let mut p = Planner::new(S, 1, 10);
        p.changed("a", t0);
        p.changed("b", t0);
        let job = p.start(t0 + S).remove(0);
        p.changed("b", t0 + S + Duration::from_millis(5));
        assert!(p.pending("a") && p.pending("b"));
        // b is dirty but running: not started twice, not counted as waiting.
        assert!(p.start(t0 + S * 3).is_empty());
        assert_eq!(p.next_due(), None);
        assert_eq!(
            p.finished(&job),
            vec![("a".to_owned(), true), ("b".to_owned(), false)]
        );
        assert!(!p.pending("a"));
        // b goes again once settled.
        assert_eq!(names(&p.start(t0 + S * 3)), vec![vec!["b"]]);
    }

    #[test]
    fn the_oldest_go_first_out_of_many() {
        let t0 = Instant::now();
        let mut p = Planner::new(S, 1, 5);
        // 100 entries whose change times are a permutation of 0..100 ms.
        for i in 0..100u64 {
            let at = (i * 37) % 100;
            p.changed(&format!("n{i:03}"), t0 + Duration::from_millis(at));
        }
        let jobs = p.start(t0 + S * 2);
        let want: Vec<String> = (0..5u64)
            .map(|at| {
                format!(
                    "n{:03}",
                    (0..100u64).find(|i| (i * 37) % 100 == at).unwrap()
                )
            })
            .collect();
        assert_eq!(jobs[0].names, want);
    }

    #[test]
    fn an_entry_open_for_writing_waits_for_the_close_then_settles() {
        let t0 = Instant::now();
        let mut p = Planner::new(S, 1, 10);
        let (a, b) = (Path::new("/c/pack/a"), Path::new("/c/pack/b"));
        p.wrote("pack", a, t0);
        p.wrote("pack", b, t0);
        p.wrote("pack", a, t0 + Duration::from_millis(10));
        // The writer pauses far longer than the settle time: still not looked at, no timer.
        assert!(p.start(t0 + S * 10).is_empty());
        assert_eq!(p.next_due(), None);
        assert!(p.being_written("pack"));
        assert_eq!(p.queue(), vec!["pack"]);
        p.closed("pack", a, t0 + S * 10);
        assert!(p.start(t0 + S * 20).is_empty(), "b is still open");
        // The last close: the entry settles from then.
        let closed = t0 + S * 20;
        p.closed("pack", b, closed);
        assert!(!p.being_written("pack"));
        assert_eq!(p.next_due(), Some(closed + S));
        assert!(p.start(closed + S / 2).is_empty());
        assert_eq!(names(&p.start(closed + S)), vec![vec!["pack"]]);
        // Lost events: writers are forgotten rather than holding an entry forever.
        let mut q = Planner::new(S, 1, 10);
        q.wrote("x", a, t0);
        q.clear_writers();
        assert_eq!(names(&q.start(t0 + S)), vec![vec!["x"]]);
    }

    #[test]
    fn entries_handed_back_are_due_at_once() {
        let t0 = Instant::now() + S;
        let mut p = Planner::new(S, 1, 2);
        p.due_now("big", t0);
        assert_eq!(names(&p.start(t0)), vec![vec!["big"]]);
    }
}
