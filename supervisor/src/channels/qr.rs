//! QR codes for linking a channel's account as a device: as a PNG `data:` URL for `web.login.start`
//! (the reference's `qrDataUrl`) and as text for a terminal.
//!
//! The PNG is 1-bit grayscale with the data in one stored (uncompressed) deflate block:
//! a QR code at 6 pixels a module is a few KiB, so compression would buy little and an
//! image library would cost a great deal.

use qrcode::{Color, QrCode};

const SCALE: usize = 6;
const QUIET: usize = 4;

/// The modules of `text` as rows of booleans (`true` = dark), quiet zone included.
fn modules(text: &str) -> Option<Vec<Vec<bool>>> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let full = width + 2 * QUIET;
    let mut rows = vec![vec![false; full]; full];
    for y in 0..width {
        for x in 0..width {
            rows[y + QUIET][x + QUIET] = colors[y * width + x] == Color::Dark;
        }
    }
    Some(rows)
}

/// `data:image/png;base64,…` of the QR code, or `None` if `text` cannot be encoded.
pub fn data_url(text: &str) -> Option<String> {
    use base64::Engine;
    let png = png(&modules(text)?);
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// The QR code drawn with half blocks, two module rows per line. Light modules are
/// drawn, dark ones left blank: right for the usual light-on-dark terminal.
pub fn terminal(text: &str) -> Option<String> {
    let rows = modules(text)?;
    let mut out = String::new();
    for pair in rows.chunks(2) {
        for x in 0..pair[0].len() {
            let top_light = !pair[0][x];
            let bottom_light = pair.get(1).is_none_or(|r| !r[x]);
            out.push(match (top_light, bottom_light) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Some(out)
}

fn png(rows: &[Vec<bool>]) -> Vec<u8> {
    let side = rows.len() * SCALE;
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity(side * (row_bytes + 1));
    for row in rows {
        let mut line = vec![0u8; row_bytes];
        for (x, dark) in row.iter().enumerate() {
            if !dark {
                for px in x * SCALE..(x + 1) * SCALE {
                    line[px / 8] |= 0x80 >> (px % 8); // 1 = white
                }
            }
        }
        for _ in 0..SCALE {
            raw.push(0); // filter: none
            raw.extend_from_slice(&line);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65_535).peekable();
    while let Some(block) = chunks.next() {
        zlib.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE 00 (stored)
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1-bit grayscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for x in chunk {
            a += u32::from(*x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPython's zlib and a chunk parser, not this file's code, read the image back.
    #[test]
    fn an_independent_decoder_reads_the_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qr.png");
        let rows = modules("2@AbCdEf,ghIjKl,MnOpQr,1").unwrap();
        std::fs::write(&path, png(&rows)).unwrap();
        let script = r#"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat, ihdr = 8, b'', None
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos+8])
    body = data[pos+8:pos+8+n]
    crc, = struct.unpack('>I', data[pos+8+n:pos+12+n])
    assert zlib.crc32(kind + body) == crc, kind
    if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
    if kind == b'IDAT': idat += body
    pos += 12 + n
w, h, depth, color = ihdr[:4]
raw = zlib.decompress(idat)
stride = (w + 7) // 8 + 1
assert len(raw) == stride * h
def px(x, y): return (raw[y*stride + 1 + x//8] >> (7 - x % 8)) & 1
print(w, h, depth, color, px(0, 0), px(4*6, 4*6))
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let side = rows.len() * SCALE;
        // 1-bit grayscale; the quiet zone is white (1), a finder pattern's corner black (0).
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{side} {side} 1 0 1 0")
        );
    }

    #[test]
    fn checksums_match_their_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn the_png_is_well_formed_and_the_terminal_art_square() {
        use base64::Engine;
        let url = data_url("2@AbCdEf,ghIjKl,MnOpQr,1").unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(url.strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let side = u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize;
        assert_eq!(side % SCALE, 0);
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND's CRC");
        let art = terminal("hello").unwrap();
        let lines: Vec<&str> = art.lines().collect();
        let w = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == w));
        assert_eq!(lines.len(), w.div_ceil(2));
    }
}
