//! An AMF0 reader with a nesting limit.
//!
//! Written here rather than using `rml_amf0::deserialize` because that one recurses without a
//! bound: a few kilobytes of nested objects from a hostile publisher overflow the stack and take
//! the whole server down. Values are `rml_amf0::Amf0Value` so that `rml_amf0::serialize` writes
//! our replies.

use std::collections::HashMap;

pub use rml_amf0::Amf0Value;

use crate::{Error, Result};

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 16;
/// Most entries accepted in one object or array.
pub const MAX_ENTRIES: usize = 1024;

/// Reads every value in `data`.
pub fn decode_all(mut data: &[u8]) -> Result<Vec<Amf0Value>> {
    let mut values = Vec::new();
    while !data.is_empty() {
        if values.len() >= MAX_ENTRIES {
            return Err(Error::Amf0("too many values"));
        }
        values.push(read_value(&mut data, 0)?);
    }
    Ok(values)
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if data.len() < n {
        return Err(Error::Amf0("value runs past the end"));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn read_u16(data: &mut &[u8]) -> Result<usize> {
    let b = take(data, 2)?;
    Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

fn read_u32(data: &mut &[u8]) -> Result<usize> {
    let b = take(data, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn read_string(data: &mut &[u8], len: usize) -> Result<String> {
    let b = take(data, len)?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn read_properties(data: &mut &[u8], depth: usize) -> Result<HashMap<String, Amf0Value>> {
    let mut map = HashMap::new();
    loop {
        let key_len = read_u16(data)?;
        if key_len == 0 && data.first() == Some(&0x09) {
            *data = &data[1..];
            return Ok(map);
        }
        if map.len() >= MAX_ENTRIES {
            return Err(Error::Amf0("too many object properties"));
        }
        let key = read_string(data, key_len)?;
        let value = read_value(data, depth + 1)?;
        map.insert(key, value);
    }
}

fn read_value(data: &mut &[u8], depth: usize) -> Result<Amf0Value> {
    if depth > MAX_DEPTH {
        return Err(Error::Amf0("nested too deeply"));
    }
    let marker = take(data, 1)?[0];
    Ok(match marker {
        0x00 => {
            let b = take(data, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Amf0Value::Number(f64::from_be_bytes(a))
        }
        0x01 => Amf0Value::Boolean(take(data, 1)?[0] != 0),
        0x02 => {
            let len = read_u16(data)?;
            Amf0Value::Utf8String(read_string(data, len)?)
        }
        0x03 => Amf0Value::Object(read_properties(data, depth)?),
        0x05 => Amf0Value::Null,
        0x06 => Amf0Value::Undefined,
        0x08 => {
            let _count_hint = read_u32(data)?;
            Amf0Value::Object(read_properties(data, depth)?)
        }
        0x0a => {
            let count = read_u32(data)?;
            if count > MAX_ENTRIES {
                return Err(Error::Amf0("strict array too long"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(read_value(data, depth + 1)?);
            }
            Amf0Value::StrictArray(items)
        }
        0x0b => {
            // Date: a double and a time zone we ignore.
            let b = take(data, 10)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            Amf0Value::Number(f64::from_be_bytes(a))
        }
        0x0c => {
            let len = read_u32(data)?;
            Amf0Value::Utf8String(read_string(data, len)?)
        }
        _ => return Err(Error::Amf0("unsupported type marker")),
    })
}

/// Encodes values for a reply. Our own values only, so this cannot fail in practice; an error
/// is still reported rather than unwrapped.
pub fn encode(values: &Vec<Amf0Value>) -> Result<Vec<u8>> {
    rml_amf0::serialize(values).map_err(|_| Error::Amf0("cannot serialize reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_connect_command() {
        let mut obj = HashMap::new();
        obj.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        obj.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String("rtmp://h/live".into()),
        );
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(obj),
            Amf0Value::Null,
        ];
        assert_eq!(decode_all(&encode(&values).unwrap()).unwrap(), values);
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing() {
        let mut data = Vec::new();
        for _ in 0..100_000 {
            data.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        assert!(decode_all(&data).is_err());
    }

    #[test]
    fn refuses_truncation() {
        let enc = encode(&vec![
            Amf0Value::Utf8String("publish".into()),
            Amf0Value::Number(5.0),
        ])
        .unwrap();
        // The string takes 10 bytes; a cut there is a whole (shorter) list, any other cut is not.
        assert_eq!(decode_all(&enc[..10]).unwrap().len(), 1);
        for n in (1..enc.len()).filter(|&n| n != 10) {
            assert!(decode_all(&enc[..n]).is_err(), "prefix {n} accepted");
        }
    }
}
