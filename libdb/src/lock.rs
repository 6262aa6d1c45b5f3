//! The lock around the database state. With `std` it is a mutex, so a `Db`
//! can be shared by threads (one writer, snapshot readers on others);
//! without it (a single-threaded libOS) it is a `RefCell`.

#[cfg(feature = "std")]
pub(crate) struct Lock<T>(std::sync::Mutex<T>);

#[cfg(feature = "std")]
impl<T> Lock<T> {
    pub fn new(t: T) -> Self {
        Lock(std::sync::Mutex::new(t))
    }
    /// A panic while holding the lock cannot leave the state torn in a
    /// way the next user could observe wrongly (every mutation that spans
    /// I/O poisons the database itself), so lock poisoning is ignored.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Lock<T>(core::cell::RefCell<T>);

#[cfg(not(feature = "std"))]
impl<T> Lock<T> {
    pub fn new(t: T) -> Self {
        Lock(core::cell::RefCell::new(t))
    }
    pub fn lock(&self) -> core::cell::RefMut<'_, T> {
        self.0.borrow_mut()
    }
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }
}
