//! How a text message goes on the wire. A small one is one frame. A large one (a presence
//! list with a thousand entries, `hello-ok` with its snapshot, a long chat history) is
//! written as RFC 6455 fragments of at most [`FRAGMENT`] bytes, taken from the shared
//! encoding without copying it: the WebSocket layer keeps a write buffer per connection
//! as large as the largest frame it ever wrote, so whole large messages would leave every
//! connection holding a copy of the largest broadcast for the rest of its life.
//!
//! A connection's writer task ([`write_loop`]) drains its queue into the socket here.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::app::metrics::Metrics;
use crate::events::hub::{ConnHandle, Outbound, Queue};
use crate::protocol;

/// After a close frame, how long to wait for the peer's before dropping the socket.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: protocol::truncate_close_reason(reason).to_owned().into(),
    }))
}

/// The largest frame written for a message (and so the most a connection's write buffer
/// holds after it). Control frames may go between fragments, as RFC 6455 allows.
pub const FRAGMENT: usize = 4 * 1024;

/// A message as pieces of shared encoded text, in order.
pub type Pieces = Vec<Bytes>;

/// Drains the queue into the socket until the connection is cut or closed; hands the
/// sink back (for the lingering close).
pub async fn write_loop<K>(
    mut sink: K,
    mut rx: Queue,
    handle: Arc<ConnHandle>,
    metrics: Arc<Metrics>,
) -> K
where
    K: Sink<Message, Error = Error> + Unpin,
{
    let cut = handle.cut_token();
    loop {
        let next = tokio::select! {
            biased;
            _ = cut.cancelled() => break,
            m = rx.recv() => m,
        };
        let frame = match next {
            Some(Outbound::Close(close)) => {
                let (code, reason) = *close;
                let _ =
                    tokio::time::timeout(CLOSE_GRACE, sink.send(close_frame(code, &reason))).await;
                cut.cancel();
                return sink;
            }
            None => break,
            Some(f) => f,
        };
        let n = frame.len();
        handle.writing(true);
        let write = async {
            match frame {
                Outbound::Text(text) => send_text(&mut sink, text).await,
                // The shared encoding, with this connection's number: put together for a
                // small event, written from the shared pieces for a large one.
                Outbound::Event(template, seq) if n <= FRAGMENT => {
                    sink.send(Message::text(template.stamp(seq))).await
                }
                Outbound::Event(template, seq) => {
                    send_pieces(&mut sink, &template.pieces(seq)).await
                }
                Outbound::Close(..) => Ok(()),
            }
        };
        let sent = tokio::select! {
            r = write => r.is_ok(),
            _ = cut.cancelled() => { handle.writing(false); handle.written(n); break; }
        };
        handle.writing(false);
        handle.written(n);
        if !sent {
            break;
        }
        metrics.frames_out.fetch_add(1, Relaxed);
    }
    // Cut: queued frames are dropped with the queue; say why if there is a reason.
    drop(rx);
    if let Some((code, reason)) = handle.take_close() {
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close_frame(code, &reason))).await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    cut.cancel();
    sink
}

/// Sends `text` as one frame when it is small, as fragments otherwise.
pub async fn send_text<K>(sink: &mut K, text: String) -> Result<(), Error>
where
    K: Sink<Message, Error = Error> + Unpin,
{
    if text.len() <= FRAGMENT {
        return sink.send(Message::text(text)).await;
    }
    send_fragments(sink, fragments(&[Bytes::from(text)], FRAGMENT)).await
}

/// Sends a message made of `pieces` (all of it valid UTF-8 together).
pub async fn send_pieces<K>(sink: &mut K, pieces: &[Bytes]) -> Result<(), Error>
where
    K: Sink<Message, Error = Error> + Unpin,
{
    let len: usize = pieces.iter().map(Bytes::len).sum();
    if len <= FRAGMENT {
        let mut buf = Vec::with_capacity(len);
        for p in pieces {
            buf.extend_from_slice(p);
        }
        let text = String::from_utf8(buf).map_err(|_| Error::Utf8(String::new()))?;
        return sink.send(Message::text(text)).await;
    }
    send_fragments(sink, fragments(pieces, FRAGMENT)).await
}

async fn send_fragments<K>(sink: &mut K, parts: Vec<Bytes>) -> Result<(), Error>
where
    K: Sink<Message, Error = Error> + Unpin,
{
    // Fed without a flush each, then flushed once: the transport gathers the frames
    // into one socket write (`net::http::Prefixed`).
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        let op = if i == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(part, OpCode::Data(op), i == last);
        sink.feed(Message::Frame(frame)).await?;
    }
    sink.flush().await
}

/// Cuts the concatenation of `pieces` into parts of at most `max` bytes, never inside a
/// UTF-8 character. A part that lies within one piece is a slice of it (no copy); only
/// parts that join pieces are copied.
pub fn fragments(pieces: &[Bytes], max: usize) -> Vec<Bytes> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut cur: Vec<Bytes> = Vec::new();
    let mut cur_len = 0;
    for piece in pieces {
        let mut p = piece.clone();
        while !p.is_empty() {
            let room = max - cur_len;
            let mut take = p.len().min(room);
            if take < p.len() {
                while take > 0 && p[take] & 0xC0 == 0x80 {
                    take -= 1;
                }
            }
            if take == 0 {
                // The next character does not fit in what is left of this part.
                flush(&mut out, &mut cur, &mut cur_len);
                continue;
            }
            cur.push(p.split_to(take));
            cur_len += take;
            if cur_len == max || !p.is_empty() {
                flush(&mut out, &mut cur, &mut cur_len);
            }
        }
    }
    flush(&mut out, &mut cur, &mut cur_len);
    out
}

fn flush(out: &mut Vec<Bytes>, cur: &mut Vec<Bytes>, cur_len: &mut usize) {
    match cur.len() {
        0 => {}
        1 => out.extend(cur.pop()),
        _ => {
            let mut joined = BytesMut::with_capacity(*cur_len);
            for b in cur.drain(..) {
                joined.extend_from_slice(&b);
            }
            out.push(joined.freeze());
        }
    }
    *cur_len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(parts: &[Bytes]) -> String {
        let all: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        String::from_utf8(all).expect("valid UTF-8")
    }

    #[test]
    fn parts_are_bounded_rejoin_to_the_message_and_never_split_a_character() {
        let text = "ab€ü😀".repeat(3000);
        let head = Bytes::from(text.clone());
        let pieces = [
            head.clone(),
            Bytes::from_static(b"12"),
            Bytes::from_static(b"}"),
        ];
        for max in [4, 7, 100, 4096] {
            let parts = fragments(&pieces, max);
            assert_eq!(joined(&parts), format!("{text}12}}"), "max {max}");
            for p in &parts {
                assert!(!p.is_empty() && p.len() <= max, "{} > {max}", p.len());
                assert!(std::str::from_utf8(p).is_ok(), "a part is whole characters");
            }
        }
        // Parts inside the large piece are slices of it, not copies.
        let parts = fragments(&pieces, 4096);
        let range = head.as_ptr() as usize..head.as_ptr() as usize + head.len();
        assert!(range.contains(&(parts[0].as_ptr() as usize)));
    }

    #[test]
    fn a_small_message_is_one_part() {
        let parts = fragments(
            &[Bytes::from_static(b"{\"a\":"), Bytes::from_static(b"1}")],
            4096,
        );
        assert_eq!(parts.len(), 1);
        assert_eq!(joined(&parts), "{\"a\":1}");
    }
}
