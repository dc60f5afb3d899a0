"""The only door to etcd: key schema, value codec, the Store protocol, the etcd client, resumable watches and the
registry feed (decoded registrations)."""
