//! The retry loop against a scripted fake upstream, under paused time.
