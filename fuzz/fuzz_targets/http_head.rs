//! The request head every connection starts with (`net::http::read_head`), fed in one
//! piece and in small chunks.
//!
//! Invariants: nothing panics; a head is accepted only within `MAX_HEAD` bytes plus the
//! last read; every byte read is handed back for replay, in order; the answer does not
//! depend on how the bytes were split.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard::net::http::{HeadError, MAX_HEAD, read_head};

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Hands out its bytes `chunk` at a time, as a slow client would.
struct Dribble<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl tokio::io::AsyncRead for Dribble<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

type Outcome = Result<(String, String, Option<String>, bool), String>;

fn read(data: &[u8], chunk: usize) -> (Outcome, Option<Vec<u8>>) {
    let mut src = Dribble { data, chunk };
    match rt().block_on(read_head(&mut src)) {
        Ok((head, replay)) => {
            let ws = head.is_websocket();
            let _ = head.is_proxied();
            let _ = head.header("host");
            (Ok((head.method, head.path, head.query, ws)), Some(replay))
        }
        Err(e @ (HeadError::Closed | HeadError::TooLarge | HeadError::Malformed(_))) => {
            (Err(e.to_string()), None)
        }
        Err(HeadError::Io(e)) => panic!("reading from memory failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (whole, replay) = read(data, 1024);
    if let Some(replay) = replay {
        assert!(
            replay.len() <= MAX_HEAD + 1024,
            "head of {} bytes accepted",
            replay.len()
        );
        assert!(
            data.starts_with(&replay),
            "replayed bytes differ from those read"
        );
    }
    // Split differently (a byte at a time, capped so the run stays fast): the same answer.
    if data.len() <= 2048 {
        let (dribbled, _) = read(data, 7);
        match (&whole, &dribbled) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the head depends on how it was split"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("split changed the outcome: {a:?} vs {b:?}"),
        }
    }
});
