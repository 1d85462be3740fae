//! An upstream that fails on purpose, natively: the tests and the simulation plan a
//! fault for the next read or write and see what the connector makes of it. Not
//! built for the worker.

use std::cell::RefCell;
use std::collections::VecDeque;

use sync::sql::{Dialect, Statement};

use super::{Database, RawRow};
use crate::error::ApiError;

/// What the next matching call does instead of (or besides) its work.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Fails before doing anything, as a lost connection or an overloaded D1 does.
    Transient(String),
    /// Does the work, then fails: the transaction committed but its answer was lost.
    LostAnswer,
    /// Runs these statements first, in their own transaction: another writer got in
    /// between the push's read and its write.
    RaceWith(Vec<Statement>),
}

/// Which calls a fault waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Read,
    Write,
}

/// `inner` with planned faults.
pub struct Faulty<D> {
    pub inner: D,
    planned: RefCell<VecDeque<(Call, Fault)>>,
    fired: RefCell<Vec<Fault>>,
}

impl<D: Database> Faulty<D> {
    pub fn new(inner: D) -> Self {
        Self { inner, planned: RefCell::new(VecDeque::new()), fired: RefCell::new(Vec::new()) }
    }

    /// The next `call` (a read is `read`, `read_each` or `rows`) meets `fault`.
    pub fn plan(&self, call: Call, fault: Fault) {
        self.planned.borrow_mut().push_back((call, fault));
    }

    /// Faults planned and not yet met.
    pub fn pending(&self) -> usize {
        self.planned.borrow().len()
    }

    /// Drops the faults not met yet.
    pub fn take_planned(&self) {
        self.planned.borrow_mut().clear();
    }

    /// The faults that took effect so far, oldest first (a [`Fault::LostAnswer`] only
    /// when the work it met committed: then the answer, not the work, was lost).
    pub fn fired(&self) -> Vec<Fault> {
        self.fired.borrow().clone()
    }

    fn take(&self, call: Call) -> Option<Fault> {
        let mut planned = self.planned.borrow_mut();
        let index = planned.iter().position(|(waits_for, _)| *waits_for == call)?;
        let (_, fault) = planned.remove(index)?;
        if fault != Fault::LostAnswer {
            self.fired.borrow_mut().push(fault.clone());
        }
        Some(fault)
    }

    async fn with_fault<T>(
        &self,
        call: Call,
        work: impl AsyncFnOnce() -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match self.take(call) {
            None => work().await,
            Some(Fault::Transient(reason)) => Err(ApiError::sqlite_failure(reason)),
            Some(Fault::LostAnswer) => {
                work().await?;
                self.fired.borrow_mut().push(Fault::LostAnswer);
                Err(ApiError::sqlite_failure("D1_ERROR: Network connection lost."))
            }
            Some(Fault::RaceWith(statements)) => {
                // The racing writer's failure is its own business.
                let _ = self.inner.write(&statements).await;
                work().await
            }
        }
    }
}

impl<D: Database> Database for Faulty<D> {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        self.with_fault(Call::Read, async || self.inner.rows(statement).await).await
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.with_fault(Call::Read, async || self.inner.read(statements).await).await
    }

    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.with_fault(Call::Read, async || self.inner.read_each(statements).await).await
    }

    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        self.with_fault(Call::Write, async || self.inner.write(statements).await).await
    }
}
