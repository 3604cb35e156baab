//! Owning the terminal: raw mode and the alternate screen on the way in, and a guaranteed way
//! out on quit, on an error (the guard's `Drop`), on a signal, and on a panic.
//!
//! ratatui's own `init()` installs a panic hook that restores the terminal on a panic in *any*
//! thread. In the lab a panic in a role's task (on a tokio worker) does not end the program,
//! so restoring there would leave a running TUI drawing into the normal screen. This hook
//! restores only for the UI thread; other threads' panics are kept for the log pane and
//! printed once the terminal is back.

use std::io::{self, BufWriter, Stdout, stdout};
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event;
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;

/// Panics of other threads kept while the TUI owns the screen (a few are enough to report).
const KEPT_PANICS: usize = 16;

type PanicHook = dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static;

/// Whether raw mode and the alternate screen are on (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static OTHER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The terminal while the TUI runs. Dropping it restores the screen and the panic hook.
pub struct TerminalSession {
    previous_hook: Arc<PanicHook>,
}

/// What the screen is drawn through: stdout behind a buffer that holds a whole frame, so a
/// redraw is one write to the terminal (ratatui flushes at the end of each draw). Bare stdout
/// is line-buffered in 1 kB and wrote a busy frame in several pieces.
pub type ScreenBackend = CrosstermBackend<BufWriter<Stdout>>;

/// Bytes buffered per redraw: a full 200×60 repaint with colours fits.
const FRAME_BUFFER: usize = 256 * 1024;

/// Switches the terminal to raw mode and the alternate screen; returns the terminal to draw on
/// and the session that restores everything when dropped.
pub fn enter() -> io::Result<(Terminal<ScreenBackend>, TerminalSession)> {
    let terminal = Terminal::new(CrosstermBackend::new(BufWriter::with_capacity(
        FRAME_BUFFER,
        stdout(),
    )))?;
    let previous_hook: Arc<PanicHook> = Arc::from(std::panic::take_hook());
    let ui_thread = thread::current().id();
    let chained = previous_hook.clone();
    std::panic::set_hook(Box::new(move |info| on_panic(info, ui_thread, &*chained)));
    // From here on a failure still restores everything through `Drop`.
    let session = TerminalSession { previous_hook };
    ACTIVE.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    execute!(stdout(), EnterAlternateScreen, Hide)?;
    Ok((terminal, session))
}

fn on_panic(info: &PanicHookInfo<'_>, ui_thread: ThreadId, previous: &PanicHook) {
    if !ACTIVE.load(Ordering::SeqCst) || thread::current().id() == ui_thread {
        restore();
        previous(info);
        return;
    }
    let name = thread::current()
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| "a worker".into());
    let mut kept = OTHER_PANICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.len() < KEPT_PANICS {
        kept.push(format!("panic in {name}: {info}"));
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor. Safe to call twice.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(stdout(), LeaveAlternateScreen, Show);
    }
}

/// Panics of role threads since the last call (the log pane shows them).
pub fn take_other_panics() -> Vec<String> {
    std::mem::take(
        &mut *OTHER_PANICS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        restore();
        // `set_hook` itself panics on a panicking thread (an abort during unwinding); the
        // hook installed by `enter` already chains to the previous one, so leave it then.
        if !thread::panicking() {
            let previous = self.previous_hook.clone();
            std::panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// Reads terminal input on its own thread (crossterm's reader blocks) and hands it to the
/// async loop. It stops within one poll interval after `stop` is set, while the terminal lives.
pub struct InputReader {
    pub events: mpsc::UnboundedReceiver<event::Event>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl InputReader {
    pub fn spawn() -> io::Result<InputReader> {
        let (tx, events) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = thread::Builder::new()
            .name("tui-input".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    match event::poll(Duration::from_millis(50)) {
                        Ok(true) => match event::read() {
                            Ok(input) => {
                                if tx.send(input).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        },
                        Ok(false) => {}
                        Err(_) => return,
                    }
                }
            })?;
        Ok(InputReader {
            events,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for InputReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Normally the thread notices `stop` within one poll. But when the terminal is gone
        // (its window closed: SIGHUP), crossterm 0.29's reader loops forever on the dead tty
        // and never returns; joining it would hang the exit. So wait briefly, then leave it:
        // it ends with the process.
        let deadline = std::time::Instant::now() + Duration::from_millis(300);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, each a reason to quit cleanly. (In raw mode Ctrl-C arrives
/// as a key, not as SIGINT; `kill -INT` still sends the signal.)
pub struct QuitSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl QuitSignals {
    pub fn new() -> io::Result<QuitSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(QuitSignals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(QuitSignals {})
    }

    /// Resolves when any of the signals arrives.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            _ = self.hangup.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
