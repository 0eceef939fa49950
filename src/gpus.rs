//! The CUDA devices this process sees, in libtorch's index order, with what a user checks
//! first: name, memory, compute capability, native bf16, driver version. Read from the CUDA
//! driver (`libcuda.so.1`, loaded at run time: present wherever an NVIDIA driver is, absent
//! on a CPU machine). The driver applies `CUDA_VISIBLE_DEVICES` and `CUDA_DEVICE_ORDER`
//! exactly as for libtorch, so `cuda:N` here is `cuda:N` there (nvidia-smi's numbering is
//! the physical PCI order, which can differ).
use std::ffi::{c_char, c_int, c_void, CStr};

/// One visible CUDA device.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub memory_bytes: u64,
    pub compute_capability: (i32, i32),
}

impl Gpu {
    /// Ampere (compute capability 8.0) and newer have bf16 tensor cores.
    pub fn native_bf16(&self) -> bool {
        self.compute_capability.0 >= 8
    }
}

/// What the driver says: its release (e.g. "580.95.05"), the CUDA version it supports (e.g.
/// 13000 for 13.0) and the devices.
#[derive(Debug, Clone, Default)]
pub struct Driver {
    pub release: Option<String>,
    pub cuda_version: Option<i32>,
    pub gpus: Vec<Gpu>,
    /// Why there are none, when the driver could not be asked.
    pub unavailable: Option<String>,
}

const COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const COMPUTE_CAPABILITY_MINOR: c_int = 76;

type CuInit = unsafe extern "C" fn(flags: u32) -> c_int;
type CuInt = unsafe extern "C" fn(value: *mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(device: *mut c_int, ordinal: c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(name: *mut c_char, len: c_int, device: c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(bytes: *mut usize, device: c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(value: *mut c_int, attribute: c_int, device: c_int) -> c_int;

/// Asks the CUDA driver; never fails (a machine without one has no GPUs).
pub fn driver() -> Driver {
    match query() {
        Ok(driver) => driver,
        Err(why) => Driver { unavailable: Some(why), ..Driver::default() },
    }
}

fn query() -> Result<Driver, String> {
    let library = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if library.is_null() {
        return Err("no NVIDIA driver (libcuda.so.1 not found)".into());
    }
    let symbol = |name: &CStr| -> Result<*mut c_void, String> {
        let address = unsafe { libc::dlsym(library, name.as_ptr()) };
        (!address.is_null()).then_some(address).ok_or_else(|| format!("the CUDA driver has no {name:?}"))
    };
    // Function pointers of the driver API's documented signatures.
    let (init, driver_version, count, get, get_name, total_mem, attribute) = unsafe {
        (
            std::mem::transmute::<*mut c_void, CuInit>(symbol(c"cuInit")?),
            std::mem::transmute::<*mut c_void, CuInt>(symbol(c"cuDriverGetVersion")?),
            std::mem::transmute::<*mut c_void, CuInt>(symbol(c"cuDeviceGetCount")?),
            std::mem::transmute::<*mut c_void, CuDeviceGet>(symbol(c"cuDeviceGet")?),
            std::mem::transmute::<*mut c_void, CuDeviceGetName>(symbol(c"cuDeviceGetName")?),
            std::mem::transmute::<*mut c_void, CuDeviceTotalMem>(symbol(c"cuDeviceTotalMem_v2")?),
            std::mem::transmute::<*mut c_void, CuDeviceGetAttribute>(symbol(c"cuDeviceGetAttribute")?),
        )
    };
    let call = |what: &str, status: c_int| {
        if status == 0 {
            Ok(())
        } else {
            Err(format!("{what} failed (CUDA error {status})"))
        }
    };
    let mut version = 0;
    call("cuDriverGetVersion", unsafe { driver_version(&mut version) })?;
    call("cuInit", unsafe { init(0) })?;
    let mut n = 0;
    call("cuDeviceGetCount", unsafe { count(&mut n) })?;
    let mut gpus = Vec::new();
    for index in 0..n {
        let mut device = 0;
        call("cuDeviceGet", unsafe { get(&mut device, index) })?;
        let mut name = [0 as c_char; 256];
        call("cuDeviceGetName", unsafe { get_name(name.as_mut_ptr(), name.len() as c_int, device) })?;
        let mut bytes = 0usize;
        call("cuDeviceTotalMem", unsafe { total_mem(&mut bytes, device) })?;
        let (mut major, mut minor) = (0, 0);
        call("cuDeviceGetAttribute", unsafe { attribute(&mut major, COMPUTE_CAPABILITY_MAJOR, device) })?;
        call("cuDeviceGetAttribute", unsafe { attribute(&mut minor, COMPUTE_CAPABILITY_MINOR, device) })?;
        gpus.push(Gpu {
            index: index as usize,
            name: unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned(),
            memory_bytes: bytes as u64,
            compute_capability: (major, minor),
        });
    }
    Ok(Driver { release: release(), cuda_version: Some(version), gpus, unavailable: None })
}

/// The driver's release number, from NVML (shipped with every NVIDIA driver).
fn release() -> Option<String> {
    type NvmlInit = unsafe extern "C" fn() -> c_int;
    type NvmlVersion = unsafe extern "C" fn(version: *mut c_char, len: u32) -> c_int;
    let library = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if library.is_null() {
        return None;
    }
    let init = unsafe { libc::dlsym(library, c"nvmlInit_v2".as_ptr()) };
    let version = unsafe { libc::dlsym(library, c"nvmlSystemGetDriverVersion".as_ptr()) };
    if init.is_null() || version.is_null() {
        return None;
    }
    let (init, version) = unsafe {
        (std::mem::transmute::<*mut c_void, NvmlInit>(init), std::mem::transmute::<*mut c_void, NvmlVersion>(version))
    };
    let mut text = [0 as c_char; 96];
    (unsafe { init() } == 0 && unsafe { version(text.as_mut_ptr(), text.len() as u32) } == 0)
        .then(|| unsafe { CStr::from_ptr(text.as_ptr()) }.to_string_lossy().into_owned())
}

/// "13.0" from the driver's 13000.
pub fn cuda_version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, version % 1000 / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_people_write_them() {
        assert_eq!(cuda_version_text(13000), "13.0");
        assert_eq!(cuda_version_text(12060), "12.6");
    }

    #[test]
    fn bf16_tensor_cores_start_with_ampere() {
        let gpu = |cc| Gpu { index: 0, name: "x".into(), memory_bytes: 0, compute_capability: cc };
        assert!(!gpu((7, 5)).native_bf16() && gpu((8, 0)).native_bf16() && gpu((9, 0)).native_bf16());
    }

    #[test]
    fn the_driver_query_answers_on_any_machine() {
        let driver = driver();
        // On a machine without a driver there are no GPUs and the reason is given; with one,
        // every device has a name and some memory.
        match &driver.unavailable {
            Some(why) => assert!(driver.gpus.is_empty() && !why.is_empty()),
            None => assert!(driver.gpus.iter().all(|g| !g.name.is_empty() && g.memory_bytes > 0)),
        }
    }
}
