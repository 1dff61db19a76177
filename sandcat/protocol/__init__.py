"""Wire formats: the bincode ``Msg`` codec, content payloads and HTTP JSON shapes."""
