//! The `actions!` macro: expands the list of actions in `steps/mod.rs` into everything
//! that names every action, so that list is the only place they are enumerated.
//!
//! For `set: Set` (the YAML key, which is also the file, and the type in it) it adds:
//! - a field `set` to [`StepSource`](super::StepSource), typed by
//!   [`StepAction::Source`](super::StepAction::Source), in the list's order — the order
//!   serde reports the step's keys in;
//! - a variant `Action::Set(set::Set)` and its arm in each dispatching method;
//! - `"set"` in [`ACTIONS`](super::ACTIONS), the names `kontor check` offers.
//!
//! `connector: Connector with call` adds the step key `call` right after `connector`:
//! a key of the step that only that action reads.

macro_rules! actions {
    ($($key:ident: $Type:ident $(with $extra:ident)?),* $(,)?) => {
        /// One step as written in a workflow file: its shared keys and (exactly) one
        /// action's key.
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct StepSource {
            pub id: serde_saphyr::Spanned<String>,
            #[serde(default)]
            pub description: Option<String>,
            /// The step to continue with; default: the next one in the list (or the end).
            #[serde(default)]
            pub next: Option<serde_saphyr::Spanned<String>>,
            #[serde(default)]
            pub retry: Option<serde_saphyr::Spanned<crate::workflow::source::RetrySource>>,
            /// The step to continue with when this one fails for good (a fatal error, or
            /// its retries used up); its output is then `{error: MESSAGE}`. Default: the
            /// run fails.
            #[serde(default)]
            pub on_error: Option<serde_saphyr::Spanned<String>>,
            $(
                #[doc = concat!("The `", stringify!($key), "` action: see [`", stringify!($key), "`].")]
                #[serde(default)]
                pub $key: Option<serde_saphyr::Spanned<<$key::$Type as StepAction>::Source>>,
                $(
                    #[doc = concat!("Read by the `", stringify!($key), "` action: see [`", stringify!($key), "`].")]
                    #[serde(default)]
                    pub $extra: Option<serde_saphyr::Spanned<String>>,
                )?
            )*
            /// The input of an action that takes one ([`StepAction::TAKES_INPUT`]).
            #[serde(default)]
            pub input: Option<serde_saphyr::Spanned<crate::workflow::source::ValuesSource>>,
        }

        /// What a step does, compiled: one variant per action.
        #[derive(Debug)]
        pub enum Action {
            $( $Type($key::$Type), )*
        }

        /// Every action's key, in the order `kontor check` lists them.
        pub const ACTIONS: &[&str] = &[$(stringify!($key)),*];

        impl Action {
            /// The action's key, as step records and metrics name it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Action::$Type(_) => stringify!($key), )*
                }
            }

            /// Compiles the action of a step that has exactly one.
            pub fn compile(
                site: &StepSite<'_>,
                compiler: &mut crate::workflow::compile::Compiler<'_>,
            ) -> Option<Action> {
                let step = &site.step.value;
                $(
                    if let Some(source) = &step.$key {
                        return <$key::$Type as StepAction>::compile(source, site, compiler)
                            .map(Action::$Type);
                    }
                )*
                None
            }

            /// See [`StepAction::CALLS_PLUGIN`].
            pub fn calls_plugin(&self) -> bool {
                match self {
                    $( Action::$Type(_) => <$key::$Type as StepAction>::CALLS_PLUGIN, )*
                }
            }

            /// See [`StepAction::CALL_COMMITS_ITSELF`].
            pub fn call_commits_itself(&self) -> bool {
                match self {
                    $( Action::$Type(_) => <$key::$Type as StepAction>::CALL_COMMITS_ITSELF, )*
                }
            }

            /// See [`StepAction::successors`].
            pub fn successors(&self, next: Option<usize>) -> Vec<usize> {
                match self {
                    $( Action::$Type(action) => action.successors(next), )*
                }
            }

            /// See [`StepAction::on_timeout`].
            pub fn on_timeout(&self) -> Option<usize> {
                match self {
                    $( Action::$Type(action) => action.on_timeout(), )*
                }
            }

            /// See [`StepAction::execute`].
            pub fn execute(&self, run: &mut StepRun<'_>) -> Result<Flow, StepError> {
                match self {
                    $( Action::$Type(action) => action.execute(run), )*
                }
            }
        }

        impl StepSource {
            /// The actions written on this step, in the order of [`ACTIONS`].
            pub fn actions(&self) -> Vec<&'static str> {
                let mut found = Vec::new();
                $(
                    if self.$key.is_some() {
                        found.push(stringify!($key));
                    }
                )*
                found
            }

            /// Every expression on the step, of every action written on it and its `input`.
            pub fn expressions(&self, found: &mut crate::workflow::compile::references::Expressions) {
                $(
                    if let Some(source) = &self.$key {
                        <$key::$Type as StepAction>::expressions(&source.value, found);
                    }
                )*
                if let Some(input) = &self.input {
                    found.values(&input.value);
                }
            }

            /// The variables the step's actions set.
            pub fn variables(&self) -> Vec<String> {
                let mut variables = Vec::new();
                $(
                    if let Some(source) = &self.$key {
                        variables.extend(<$key::$Type as StepAction>::variables(&source.value));
                    }
                )*
                variables
            }
        }

        /// Lets every action the step does not have check the keys it owns
        /// ([`StepAction::check_step_without`]).
        pub fn check_keys_of_other_actions(
            step: &serde_saphyr::Spanned<StepSource>,
            compiler: &mut crate::workflow::compile::Compiler<'_>,
        ) {
            $(
                if step.value.$key.is_none() {
                    <$key::$Type as StepAction>::check_step_without(step, compiler);
                }
            )*
        }

        /// Whether the action `name` ends the run ([`StepAction::ENDS_RUN`]).
        pub fn ends_run(name: &str) -> bool {
            $(
                if name == stringify!($key) {
                    return <$key::$Type as StepAction>::ENDS_RUN;
                }
            )*
            false
        }

        /// The actions whose steps may have `input:` ([`StepAction::TAKES_INPUT`]).
        pub fn taking_input() -> Vec<&'static str> {
            let mut names = Vec::new();
            $(
                if <$key::$Type as StepAction>::TAKES_INPUT {
                    names.push(stringify!($key));
                }
            )*
            names
        }
    };
}
