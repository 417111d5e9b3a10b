//! A policy's `variables` as upstream's composition evaluates them: lazily, only when an
//! expression reads `variables.<name>`, and once per evaluation however many
//! expressions read it. A variable's error is reported only where it is read, as
//! `composited variable "<name>" fails to evaluate: <error>`. Each variable sees only
//! the ones declared before it, so no chain of variables can loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cel::common::traits::Indexer;
use cel::common::types::{CelString, Type, MAP_TYPE};
use cel::common::value::{CowVal, Val};
use cel::ExecutionError;

use super::{error_text, Activation, Expression, Value};

/// Named expressions, in declaration order (a policy's `spec.variables`).
pub(crate) type Definitions = Arc<Vec<(String, Expression)>>;

/// The `function` of the errors a variable reports, so [`error_text`] shows only the
/// message.
pub(super) const VARIABLE: &str = "variables";

/// What every expression of one evaluation shares: the definitions, the activation
/// they run in, and the values (or errors) computed so far.
struct Shared {
    definitions: Definitions,
    activation: Activation,
    memo: Mutex<HashMap<usize, Result<Value, String>>>,
}

/// The `variables` value: the first `visible` definitions.
#[derive(Clone)]
pub(crate) struct Lazy {
    shared: Arc<Shared>,
    visible: usize,
}

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.shared.definitions[..self.visible]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        f.debug_tuple("variables").field(&names).finish()
    }
}

impl Lazy {
    /// `variables` over `definitions`, evaluated in `activation` when read.
    pub(crate) fn new(definitions: Definitions, activation: Activation) -> Lazy {
        let visible = definitions.len();
        Lazy {
            shared: Arc::new(Shared {
                definitions,
                activation,
                memo: Mutex::new(HashMap::new()),
            }),
            visible,
        }
    }

    /// The value of the variable at `index`, computed on first use.
    fn value(&self, index: usize) -> Result<Value, String> {
        let memo = || self.shared.memo.lock().expect("variables poisoned");
        if let Some(v) = memo().get(&index) {
            return v.clone();
        }
        // Not under the lock: the expression may read earlier variables.
        let (name, expression) = &self.shared.definitions[index];
        let mut a = self.shared.activation.clone();
        a.variables = Some(Lazy {
            shared: Arc::clone(&self.shared),
            visible: index,
        });
        let v = expression.run(&a).map_err(|e| {
            format!(
                "composited variable \"{name}\" fails to evaluate: {}",
                error_text(&e)
            )
        });
        memo().entry(index).or_insert(v).clone()
    }
}

impl Val for Lazy {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl Indexer for Lazy {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(name) = idx.downcast_ref::<CelString<'_>>().map(CelString::inner) else {
            return Err(ExecutionError::no_such_key(&format!("{idx:?}")));
        };
        let index = self.shared.definitions[..self.visible]
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| ExecutionError::no_such_key(name))?;
        let value = self
            .value(index)
            .map_err(|message| ExecutionError::function_error(VARIABLE, message))?;
        let boxed: Box<dyn Val> = value.try_into()?;
        Ok(CowVal::Owned(boxed))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}
