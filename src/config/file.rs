//! The TOML file (`--config`): its shape, read into a [`ServeConfig`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, ModelOptions, RequestLimits, ServeConfig};

/// The TOML file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    limits: RequestLimits,
    #[serde(default)]
    models: Vec<ModelOptions>,
    http_port: Option<u16>,
    default_model: Option<String>,
    api_keys_file: Option<PathBuf>,
    #[serde(default)]
    metric_tenants: Vec<String>,
}

impl ServeConfig {
    /// Parses a TOML config; relative model paths are taken from the file's directory.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        let models = file
            .models
            .into_iter()
            .map(|m| m.into_config(base))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Self {
            models,
            limits: file.limits,
            http_port: file.http_port,
            default_model: file.default_model,
            api_keys_file: file.api_keys_file.map(|p| base.join(p)),
            metric_tenants: file.metric_tenants,
        };
        config.check()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| ConfigError::InFile {
            path: path.to_owned(),
            error: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{ModelSource, RepoRef};

    fn dir(c: &ServeConfig) -> &ModelSource {
        &c.models[0].source
    }

    #[test]
    fn toml_config() {
        let text = "[limits]\nmax_text_bytes = 100\n[[models]]\nname = \"a\"\npath = \"m\"\ndevices = [\"cpu\", \"cpu\"]\n";
        let c = ServeConfig::from_toml(text, Path::new("/etc/cr")).unwrap();
        assert_eq!(c.limits.max_text_bytes, 100);
        let local = ModelSource::Local {
            dir: PathBuf::from("/etc/cr/m"),
            shadows_id: false,
        };
        assert_eq!(dir(&c), &local);
        assert_eq!(c.models[0].placement.configured().len(), 2);
        let dup =
            "[[models]]\nname = \"a\"\npath = \"m\"\n[[models]]\nname = \"a\"\npath = \"n\"\n";
        assert!(ServeConfig::from_toml(dup, Path::new(""))
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(ServeConfig::from_toml(
            "[[models]]\nname=\"a\"\npath=\"m\"\ncolor=1\n",
            Path::new("")
        )
        .is_err());
    }

    #[test]
    fn batch_pairs_default_to_64_with_a_gpu_among_the_devices() {
        let text = "[[models]]\nname = \"a\"\npath = \"m\"\ndevices = [\"cpu\", \"cuda:0\"]\n";
        let c = ServeConfig::from_toml(text, Path::new("")).unwrap();
        assert_eq!(c.models[0].batching.max_batch_pairs, 64);
    }

    #[test]
    fn hugging_face_ids_stay_ids_unless_a_directory_has_that_name() {
        let base = tempfile::tempdir().unwrap();
        let text = "[[models]]\nname = \"a\"\npath = \"org/name@v1\"\n";
        let c = ServeConfig::from_toml(text, base.path()).unwrap();
        let ModelSource::Hub(repo) = dir(&c) else {
            panic!("{:?}", dir(&c))
        };
        assert_eq!(
            (repo.id.as_str(), repo.revision.as_str()),
            ("org/name", "v1")
        );
        std::fs::create_dir_all(base.path().join("org/name@v1")).unwrap();
        let c = ServeConfig::from_toml(text, base.path()).unwrap();
        let shadowing = ModelSource::Local {
            dir: base.path().join("org/name@v1"),
            shadows_id: true,
        };
        assert_eq!(dir(&c), &shadowing);
        let flag: crate::config::ModelConfig = "a=org/name,device=cpu".parse().unwrap();
        assert_eq!(
            flag.source,
            ModelSource::Hub(RepoRef::parse("org/name").unwrap())
        );
    }
}
