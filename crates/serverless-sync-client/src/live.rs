//! The page's live views: each `use_query` keeps its rows here as a
//! [`sync::view::LiveRows`], so
//! - a local write shows at once: the page builds the mutator's operation with the
//!   app's model and applies it to the views before the worker has even seen it;
//! - the worker's change reports (each touched record's visible image) are applied in
//!   place, and a query is read again from SQLite only when a view cannot know its
//!   rows (a window that lost a row, a report too big to carry, a first snapshot).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use sync::operation::{Operation, Select};
use sync::schema::Row;
use sync::view::{Applied, LiveRows, RecordView};

/// Shows a view's rows (the hook decodes them into its signal).
pub(crate) type Show = Rc<dyn Fn(&LiveRows)>;
/// Asks the hook to read its query again.
pub(crate) type Reread = Rc<dyn Fn()>;

struct Entry {
    rows: Option<LiveRows>,
    show: Show,
    reread: Reread,
}

/// A local write the page shows before the worker stored it.
struct Ahead {
    mutation_id: String,
    record_id: String,
    operation: Operation,
}

/// What a change did to the views: who shows again, who reads again. Carried out
/// after the registry is released (a hook may register or leave while showing).
#[derive(Default)]
struct Effects {
    show: Vec<(Show, LiveRows)>,
    reread: Vec<Reread>,
}

impl Effects {
    fn add(&mut self, entry: &Entry, applied: Applied) {
        match applied {
            Applied::Unchanged => {}
            Applied::Changed => {
                if let Some(rows) = &entry.rows {
                    self.show.push((entry.show.clone(), rows.clone()));
                }
            }
            Applied::Reread => self.reread.push(entry.reread.clone()),
        }
    }

    fn run(self) {
        for (show, rows) in self.show {
            show(&rows);
        }
        for reread in self.reread {
            reread();
        }
    }
}

#[derive(Default)]
pub(crate) struct LiveViews {
    next: Cell<u64>,
    views: RefCell<BTreeMap<u64, Entry>>,
    /// Local writes shown here and not yet acknowledged by the worker: a query answer
    /// the worker gave before storing them gets them applied again.
    ahead: RefCell<Vec<Ahead>>,
}

impl LiveViews {
    pub(crate) fn register(&self, show: Show, reread: Reread) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.views.borrow_mut().insert(id, Entry { rows: None, show, reread });
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.views.borrow_mut().remove(&id);
    }

    /// The query's answer from the local store: the view is exact again (plus the
    /// local writes the worker had not stored yet when it answered).
    pub(crate) fn install(
        &self,
        id: u64,
        select: Select,
        primary_key: &str,
        rows: Vec<Row>,
        pending: Vec<String>,
    ) {
        let mut effects = Effects::default();
        {
            let mut views = self.views.borrow_mut();
            let Some(entry) = views.get_mut(&id) else { return };
            let live = match &mut entry.rows {
                Some(live) if live.select() == &select => {
                    live.replace(rows, pending);
                    live
                }
                slot => slot.insert(LiveRows::new(select, primary_key, rows, pending)),
            };
            for ahead in self.ahead.borrow().iter() {
                // Whatever it says, the view is shown below.
                let _ = live.apply_operation(&ahead.operation, &ahead.record_id);
            }
            effects.add(entry, Applied::Changed);
        }
        effects.run();
    }

    /// A local write, shown in every view it touches before the worker stores it.
    pub(crate) fn write_ahead(&self, mutation_id: &str, record_id: &str, operation: Operation) {
        let mut effects = Effects::default();
        for entry in self.views.borrow_mut().values_mut() {
            if let Some(rows) = entry.rows.as_mut() {
                let applied = rows.apply_operation(&operation, record_id);
                effects.add(entry, applied);
            }
        }
        self.ahead.borrow_mut().push(Ahead {
            mutation_id: mutation_id.to_string(),
            record_id: record_id.to_string(),
            operation,
        });
        effects.run();
    }

    /// The worker answered the write: stored (its change report came first and the
    /// views hold its image) or refused (views of its collection read again, which
    /// drops the row shown ahead).
    pub(crate) fn settled(&self, mutation_id: &str, stored: bool) {
        let settled = {
            let mut ahead = self.ahead.borrow_mut();
            ahead.iter().position(|a| a.mutation_id == mutation_id).map(|at| ahead.remove(at))
        };
        if let Some(write) = settled
            && !stored
        {
            self.reread(&[write.operation.collection().to_string()]);
        }
    }

    /// The worker's change report: records applied in place, or (without records)
    /// the views of these collections, all when none is named, read again.
    pub(crate) fn changed(&self, collections: &[String], records: Option<&[RecordView]>) {
        let Some(records) = records else {
            self.reread(collections);
            return;
        };
        let mut effects = Effects::default();
        {
            let ahead = self.ahead.borrow();
            for entry in self.views.borrow_mut().values_mut() {
                let Some(rows) = entry.rows.as_mut() else { continue };
                let mut applied = Applied::Unchanged;
                let mut touched_ahead = false;
                let collection = rows.collection().to_string();
                for record in records.iter().filter(|r| r.collection == collection) {
                    applied = applied.and(rows.apply_record(
                        &record.record_id,
                        record.row.as_ref(),
                        record.pending,
                    ));
                    touched_ahead |= ahead.iter().any(|a| a.record_id == record.record_id);
                }
                if touched_ahead {
                    // A report that overtook a write shown ahead: keep showing the write.
                    for write in ahead.iter() {
                        applied = applied.and(rows.apply_operation(&write.operation, &write.record_id));
                    }
                }
                effects.add(entry, applied);
            }
        }
        effects.run();
    }

    fn reread(&self, collections: &[String]) {
        let mut effects = Effects::default();
        for entry in self.views.borrow().values() {
            let of_these = entry.rows.as_ref().is_none_or(|rows| {
                collections.is_empty() || collections.iter().any(|c| c == rows.collection())
            });
            if of_these {
                effects.add(entry, Applied::Reread);
            }
        }
        effects.run();
    }
}
