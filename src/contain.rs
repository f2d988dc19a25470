//! Panic containment at the connection boundary (S10): the one place a
//! listener's code runs under `catch_unwind`.
//!
//! It owns two things every listener call needs: the callback scope (the
//! connection's own socket writes straight into its outbound buffer, S6)
//! and turning a panic into a message. [`contain`] does both; [`catch`]
//! only the second, for the reader, which holds the scope for a whole turn
//! of reading. It knows nothing of actors or of
//! what the connection does with a panic.

use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
    rc::Rc,
};

use crate::command::{enter_callback, Sink};

/// Runs `f`, code of the listener of connection `id`, inside its callback
/// scope, with a panic caught: `Err` carries the panic's message.
pub(crate) fn contain<R>(id: u64, sink: Rc<dyn Sink>, f: impl FnOnce() -> R) -> Result<R, String> {
    let _scope = enter_callback(id, sink);
    catch(f)
}

/// Runs `f` with a panic caught, inside the callback scope its caller
/// already holds: the connection's reader enters it once per turn (see
/// [`enter_callback`]) rather than once per message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_message(&*panic))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    struct Nowhere;

    impl Sink for Nowhere {
        fn apply_now(&self, command: Command) -> Result<(), Command> {
            Err(command)
        }
    }

    #[test]
    fn a_panic_becomes_its_message_and_a_value_passes_through() {
        let sink = || Rc::new(Nowhere) as Rc<dyn Sink>;
        assert_eq!(contain(1, sink(), || 7), Ok(7));
        assert_eq!(
            contain(1, sink(), || -> () { panic!("boom {}", 1) }),
            Err("boom 1".to_owned())
        );
        assert_eq!(
            contain(1, sink(), || -> () { std::panic::panic_any(5u8) }),
            Err("non-string panic payload".to_owned())
        );
    }
}
