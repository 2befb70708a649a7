//! Retrying a failed batch in halves, so that one pair the model cannot take, or a batch too
//! large for the device's memory, fails only the pairs it must.

/// Runs `inputs` through `run`, one result per input in order. When a batch of several pairs
/// fails, each half runs on its own (recursively): a pair that fails alone gets its own error,
/// every other pair its result. A model that fails every call costs `2n - 1` calls.
pub fn run_split<I, T, E: std::fmt::Display>(
    inputs: &[I],
    run: &mut impl FnMut(&[I]) -> Result<Vec<T>, E>,
) -> Vec<Result<T, E>> {
    match run(inputs) {
        Ok(rows) => rows.into_iter().map(Ok).collect(),
        Err(e) if inputs.len() <= 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(pairs = inputs.len(), error = %e, "batch failed; running its halves");
            let (left, right) = inputs.split_at(inputs.len() / 2);
            let mut out = run_split(left, run);
            out.extend(run_split(right, run));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in model: fails any batch holding a negative input or more than `max` inputs.
    fn model(max: usize, calls: &mut usize) -> impl FnMut(&[i32]) -> Result<Vec<i32>, String> + '_ {
        move |batch: &[i32]| {
            *calls += 1;
            if batch.len() > max {
                return Err(format!("out of memory at {} pairs", batch.len()));
            }
            match batch.iter().find(|&&x| x < 0) {
                Some(x) => Err(format!("cannot take {x}")),
                None => Ok(batch.iter().map(|x| x * 10).collect()),
            }
        }
    }

    #[test]
    fn one_bad_pair_fails_alone() {
        let mut calls = 0;
        let out = run_split(&[1, 2, -3, 4, 5], &mut model(8, &mut calls));
        let want: Vec<Result<i32, String>> =
            vec![Ok(10), Ok(20), Err("cannot take -3".into()), Ok(40), Ok(50)];
        assert_eq!(out, want);
    }

    #[test]
    fn a_batch_too_large_runs_in_halves() {
        let mut calls = 0;
        let inputs: Vec<i32> = (0..10).collect();
        let out = run_split(&inputs, &mut model(3, &mut calls));
        assert_eq!(out, (0..10).map(|x| Ok(x * 10)).collect::<Vec<_>>());
        // 10 -> 5 + 5 -> each 5 -> 2 + 3: 1 + 2 + 4 calls.
        assert_eq!(calls, 7);
    }

    #[test]
    fn a_model_that_always_fails_answers_every_pair_with_an_error() {
        let mut calls = 0;
        let out = run_split(&[1, 2, 3, 4], &mut model(0, &mut calls));
        assert!(out.iter().all(Result::is_err));
        assert_eq!((out.len(), calls), (4, 7));
    }
}
