"""The only door to etcd: key schema, value codec, the Store protocol, the etcd client and resumable watches."""
