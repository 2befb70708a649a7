use super::*;

/// A safetensors file of `header` (JSON) and `data`.
fn file_of(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join("w.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open_err(header: &str, data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match open(&file_of(dir.path(), header, data)) {
        Ok(_) => panic!("{header} opened"),
        Err(e) => e.to_string(),
    }
}

/// What tch writes reads back equal, tensor by tensor, whatever the dtype.
#[test]
fn tensors_read_back_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let a = Tensor::f_arange(12, (Kind::Float, tch::Device::Cpu))
        .unwrap()
        .f_view([3, 4])
        .unwrap();
    let b = Tensor::f_from_slice(&[7i64, -1]).unwrap();
    let c = a.f_to_kind(Kind::BFloat16).unwrap();
    Tensor::write_safetensors(&[("a", &a), ("b", &b), ("c", &c)], &path).unwrap();
    let (file, entries) = open(&path).unwrap();
    assert_eq!(entries.len(), 3);
    for (name, entry) in &entries {
        let t = file.read(name, entry).unwrap();
        let want = match name.as_str() {
            "a" => &a,
            "b" => &b,
            _ => &c,
        };
        assert!(t.equal(want), "{name}");
    }
}

/// Offsets that alias, overlap, leave a gap, stop short of or run past the data are refused by
/// tensor name, before any tensor is read; so are a shape that does not match the bytes, an
/// unknown dtype, a header that is not a map and one rank too many.
#[test]
fn the_offsets_must_tile_the_data() {
    let data = [0u8; 16];
    let entry = |name: &str, s: u64, e: u64| {
        format!(
            r#""{name}": {{"dtype": "F32", "shape": [{}], "data_offsets": [{s}, {e}]}}"#,
            (e - s) / 4
        )
    };
    let cases = [
        (
            format!("{{{}, {}}}", entry("a", 0, 16), entry("b", 0, 16)),
            "overlap",
        ),
        (
            format!("{{{}, {}}}", entry("a", 0, 12), entry("b", 4, 16)),
            "overlap",
        ),
        (
            format!("{{{}, {}}}", entry("a", 0, 4), entry("b", 8, 16)),
            "gap",
        ),
        (format!("{{{}}}", entry("a", 0, 8)), "data area is 16 bytes"),
        (
            format!("{{{}}}", entry("a", 0, 32)),
            "data area is 16 bytes",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}"#.into(),
            "do not hold",
        ),
        (
            r#"{"a": {"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}}"#.into(),
            "unknown variant",
        ),
        ("[1, 2, 3]".into(), "expected a map"),
        (
            r#"{"a": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,16], "data_offsets": [0, 16]}}"#
                .into(),
            "more than 8 dimensions",
        ),
    ];
    for (header, want) in cases {
        let err = open_err(&header, &data);
        assert!(
            err.contains("w.safetensors") && err.contains(want),
            "{header}: {err}"
        );
    }
    let ok = format!(
        r#"{{"__metadata__": {{"format": "pt"}}, {}, {}}}"#,
        entry("b", 4, 16),
        entry("a", 0, 4)
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(open(&file_of(dir.path(), &ok, &data)).unwrap().1.len(), 2);
}

/// More than MAX_ENTRIES tensors are refused while parsing.
#[test]
fn the_entry_count_is_capped() {
    let mut header = String::from("{");
    for i in 0..=MAX_ENTRIES {
        header.push_str(&format!(
            r#""t{i}": {{"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}},"#
        ));
    }
    header.pop();
    header.push('}');
    let err = open_err(&header, &[]);
    assert!(err.contains("more than 100000 tensors"), "{err}");
}
