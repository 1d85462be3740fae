//! The operations named queries and mutators build. They are plain data: the model
//! validates them, [`crate::sql`] turns them into parameterized SQL, and the
//! reference semantics ([`crate::server`], [`crate::client`]) evaluate them on rows.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Value;
use crate::schema::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Operator {
    pub fn sql(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Ne => "<>",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
        }
    }

    /// Evaluates `left <op> right` the way SQL would for same-typed, non-null values.
    pub fn holds(self, left: &Value, right: &Value) -> bool {
        let Some(ordering) = compare_values(left, right) else {
            return false;
        };
        match self {
            Operator::Eq => ordering == Ordering::Equal,
            Operator::Ne => ordering != Ordering::Equal,
            Operator::Lt => ordering == Ordering::Less,
            Operator::Le => ordering != Ordering::Greater,
            Operator::Gt => ordering == Ordering::Greater,
            Operator::Ge => ordering != Ordering::Less,
        }
    }
}

/// Orders two JSON scalars of the same kind; `None` for anything else.
pub fn compare_values(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        _ => None,
    }
}

/// `column <operator> value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub column: String,
    pub operator: Operator,
    pub value: Value,
}

impl Filter {
    pub fn matches(&self, row: &Row) -> bool {
        row.get(&self.column).is_some_and(|cell| self.operator.holds(cell, &self.value))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    Desc,
}

/// `SELECT * FROM collection WHERE filters... ORDER BY ... LIMIT n`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Select {
    pub collection: String,
    pub filters: Vec<Filter>,
    pub order_by: Vec<(String, Order)>,
    pub limit: Option<u32>,
}

impl Select {
    pub fn from(collection: impl Into<String>) -> Self {
        Self { collection: collection.into(), filters: Vec::new(), order_by: Vec::new(), limit: None }
    }

    #[must_use]
    pub fn filter(mut self, column: impl Into<String>, operator: Operator, value: impl Into<Value>) -> Self {
        self.filters.push(Filter { column: column.into(), operator, value: value.into() });
        self
    }

    #[must_use]
    pub fn order_by(mut self, column: impl Into<String>, order: Order) -> Self {
        self.order_by.push((column.into(), order));
        self
    }

    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn matches(&self, row: &Row) -> bool {
        self.filters.iter().all(|filter| filter.matches(row))
    }

    /// How two rows of this select's result are ordered: its `order_by`, then the
    /// primary key ascending (so the order is total, as in the SQL it builds).
    pub fn compare(&self, a: &Row, b: &Row, primary_key: &str) -> Ordering {
        for (column, order) in
            self.order_by.iter().map(|(c, o)| (c.as_str(), *o)).chain([(primary_key, Order::Asc)])
        {
            let ordering = match (a.get(column), b.get(column)) {
                (Some(x), Some(y)) => compare_values(x, y).unwrap_or(Ordering::Equal),
                _ => Ordering::Equal,
            };
            let ordering = if order == Order::Desc { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }

    /// Runs the select over in-memory rows (reference semantics, used by tests and
    /// by anything that needs to evaluate a query without a database).
    pub fn evaluate<'a>(&self, rows: impl IntoIterator<Item = &'a Row>, primary_key: &str) -> Vec<Row> {
        let mut out: Vec<Row> = rows.into_iter().filter(|row| self.matches(row)).cloned().collect();
        out.sort_by(|a, b| self.compare(a, b, primary_key));
        if let Some(limit) = self.limit {
            out.truncate(limit as usize);
        }
        out
    }
}

/// Inserts one record. The primary key value must be the mutation's record id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insert {
    pub collection: String,
    pub values: BTreeMap<String, Value>,
}

impl Insert {
    pub fn into(collection: impl Into<String>) -> Self {
        Self { collection: collection.into(), values: BTreeMap::new() }
    }

    #[must_use]
    pub fn value(mut self, column: impl Into<String>, value: impl Into<Value>) -> Self {
        self.values.insert(column.into(), value.into());
        self
    }
}

/// Updates one record by id, only where every guard holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub collection: String,
    pub record_id: String,
    pub set: BTreeMap<String, Value>,
    pub guards: Vec<Filter>,
}

impl Update {
    pub fn record(collection: impl Into<String>, record_id: impl Into<String>) -> Self {
        Self {
            collection: collection.into(),
            record_id: record_id.into(),
            set: BTreeMap::new(),
            guards: Vec::new(),
        }
    }

    #[must_use]
    pub fn set(mut self, column: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set.insert(column.into(), value.into());
        self
    }

    #[must_use]
    pub fn guard(mut self, column: impl Into<String>, operator: Operator, value: impl Into<Value>) -> Self {
        self.guards.push(Filter { column: column.into(), operator, value: value.into() });
        self
    }
}

/// Deletes one record by id, only where every guard holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delete {
    pub collection: String,
    pub record_id: String,
    pub guards: Vec<Filter>,
}

impl Delete {
    pub fn record(collection: impl Into<String>, record_id: impl Into<String>) -> Self {
        Self { collection: collection.into(), record_id: record_id.into(), guards: Vec::new() }
    }

    #[must_use]
    pub fn guard(mut self, column: impl Into<String>, operator: Operator, value: impl Into<Value>) -> Self {
        self.guards.push(Filter { column: column.into(), operator, value: value.into() });
        self
    }
}

/// A write a mutator builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Operation {
    Insert(Insert),
    Update(Update),
    Delete(Delete),
}

impl Operation {
    pub fn collection(&self) -> &str {
        match self {
            Operation::Insert(insert) => &insert.collection,
            Operation::Update(update) => &update.collection,
            Operation::Delete(delete) => &delete.collection,
        }
    }

    /// Applies the write to the record's current image, as the upstream would.
    /// `Err` carries the reason the write cannot apply (the client shows it).
    pub fn apply(&self, current: Option<&Row>, primary_key: &str) -> Result<Option<Row>, String> {
        match self {
            Operation::Insert(insert) => match current {
                Some(_) => Err("a record with this id already exists".into()),
                None => Ok(Some(insert.values.clone())),
            },
            Operation::Update(update) => {
                let row = current.ok_or("the record does not exist")?;
                if !update.guards.iter().all(|guard| guard.matches(row)) {
                    return Err("the record does not satisfy the mutator's required values".into());
                }
                let mut next = row.clone();
                for (column, value) in &update.set {
                    if column != primary_key {
                        next.insert(column.clone(), value.clone());
                    }
                }
                Ok(Some(next))
            }
            Operation::Delete(delete) => {
                let row = current.ok_or("the record does not exist")?;
                if !delete.guards.iter().all(|guard| guard.matches(row)) {
                    return Err("the record does not satisfy the mutator's required values".into());
                }
                Ok(None)
            }
        }
    }
}
