//! The Redis Streams queue (see the Redis issue); filled in by the Redis helper.
