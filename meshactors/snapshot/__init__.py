"""Read side: from the registry's instances to per-VIP xDS resources."""
