"""Ask the Vulkan loader (through ctypes) whether a physical device has `shaderIntegerDotProduct`.

wgpu does not report how naga compiles WGSL `dot4I8Packed`. On Vulkan, wgpu-hal enables the SPIR-V
DotProduct capabilities, and naga then emits `OpSDot` (SPV_KHR_integer_dot_product), exactly when
the physical device reports the `shaderIntegerDotProduct` feature (VK_KHR_shader_integer_dot_product
or Vulkan 1.3); otherwise naga writes a polyfill (extract bytes, multiply, add). This module reads
that same feature bit, so `q8ta_wgpu.info()` can say which of the two the kernels run. Everything
here is best effort: any failure gives None ("cannot tell"), never an exception.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache

_EXT = b"VK_KHR_shader_integer_dot_product"
_API_1_1 = (1 << 22) | (1 << 12)
_API_1_3 = (1 << 22) | (3 << 12)
_STYPE_APP_INFO = 0
_STYPE_INSTANCE_INFO = 1
_STYPE_FEATURES2 = 1000059000
_STYPE_DOT_FEATURES = 1000280000

_vp = ctypes.c_void_p
_u32 = ctypes.c_uint32


class _AppInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int), ("pNext", _vp), ("pApplicationName", ctypes.c_char_p),
        ("applicationVersion", _u32), ("pEngineName", ctypes.c_char_p), ("engineVersion", _u32),
        ("apiVersion", _u32),
    ]  # fmt: skip


class _InstanceInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int), ("pNext", _vp), ("flags", _u32),
        ("pApplicationInfo", ctypes.POINTER(_AppInfo)), ("enabledLayerCount", _u32),
        ("ppEnabledLayerNames", _vp), ("enabledExtensionCount", _u32),
        ("ppEnabledExtensionNames", _vp),
    ]  # fmt: skip


class _Properties(ctypes.Structure):
    # VkPhysicalDeviceProperties up to deviceName; `rest` over-covers the remaining 568 bytes.
    _fields_ = [
        ("apiVersion", _u32), ("driverVersion", _u32), ("vendorID", _u32), ("deviceID", _u32),
        ("deviceType", ctypes.c_int), ("deviceName", ctypes.c_char * 256),
        ("rest", ctypes.c_uint64 * 256),
    ]  # fmt: skip


class _ExtensionProperties(ctypes.Structure):
    _fields_ = [("extensionName", ctypes.c_char * 256), ("specVersion", _u32)]


class _DotFeatures(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", _vp), ("shaderIntegerDotProduct", _u32)]


class _Features2(ctypes.Structure):
    # VkPhysicalDeviceFeatures2: VkPhysicalDeviceFeatures is 55 VkBool32.
    _fields_ = [("sType", ctypes.c_int), ("pNext", _vp), ("features", _u32 * 55)]


def _load() -> ctypes.CDLL | None:
    names = {
        "win32": ["vulkan-1.dll"],
        "darwin": ["libvulkan.1.dylib", "libvulkan.dylib", "libMoltenVK.dylib"],
    }.get(sys.platform, ["libvulkan.so.1", "libvulkan.so"])
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _device_has_dot(lib: ctypes.CDLL, instance: ctypes.c_void_p, phd: ctypes.c_void_p, api: int) -> bool:
    """wgpu-hal's test: (Vulkan 1.3 or the extension) and the shaderIntegerDotProduct feature."""
    n = _u32(0)
    lib.vkEnumerateDeviceExtensionProperties(phd, None, ctypes.byref(n), None)
    exts = (_ExtensionProperties * max(1, n.value))()
    lib.vkEnumerateDeviceExtensionProperties(phd, None, ctypes.byref(n), exts)
    has_ext = any(exts[i].extensionName == _EXT for i in range(n.value))
    if api < _API_1_3 and not has_ext:
        return False
    lib.vkGetInstanceProcAddr.restype = _vp
    lib.vkGetInstanceProcAddr.argtypes = [_vp, ctypes.c_char_p]
    addr = lib.vkGetInstanceProcAddr(instance, b"vkGetPhysicalDeviceFeatures2") or lib.vkGetInstanceProcAddr(
        instance, b"vkGetPhysicalDeviceFeatures2KHR"
    )
    if not addr:
        return False
    get_features2 = ctypes.CFUNCTYPE(None, _vp, ctypes.POINTER(_Features2))(addr)
    dot = _DotFeatures(_STYPE_DOT_FEATURES, None, 0)
    feats = _Features2(_STYPE_FEATURES2, ctypes.cast(ctypes.pointer(dot), _vp))
    get_features2(phd, ctypes.byref(feats))
    return bool(dot.shaderIntegerDotProduct)


@cache
def vulkan_integer_dot_product(device_name: str) -> bool | None:
    """True/False: whether the Vulkan physical device named `device_name` has the
    shaderIntegerDotProduct feature; None when the Vulkan loader or the device cannot be read."""
    lib = _load()
    if lib is None:
        return None
    try:
        lib.vkCreateInstance.restype = ctypes.c_int
        lib.vkCreateInstance.argtypes = [ctypes.POINTER(_InstanceInfo), _vp, ctypes.POINTER(_vp)]
        lib.vkDestroyInstance.argtypes = [_vp, _vp]
        lib.vkEnumeratePhysicalDevices.restype = ctypes.c_int
        lib.vkEnumeratePhysicalDevices.argtypes = [_vp, ctypes.POINTER(_u32), _vp]
        lib.vkGetPhysicalDeviceProperties.argtypes = [_vp, ctypes.POINTER(_Properties)]
        lib.vkEnumerateDeviceExtensionProperties.restype = ctypes.c_int
        lib.vkEnumerateDeviceExtensionProperties.argtypes = [_vp, ctypes.c_char_p, ctypes.POINTER(_u32), _vp]
        app = _AppInfo(_STYPE_APP_INFO, None, b"q8ta_wgpu", 0, None, 0, _API_1_1)
        info = _InstanceInfo(_STYPE_INSTANCE_INFO, None, 0, ctypes.pointer(app), 0, None, 0, None)
        instance = _vp()
        if lib.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
            return None
        try:
            n = _u32(0)
            if lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(n), None) != 0 or n.value == 0:
                return None
            phds = (_vp * n.value)()
            lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(n), phds)
            for i in range(n.value):
                props = _Properties()
                lib.vkGetPhysicalDeviceProperties(phds[i], ctypes.byref(props))
                if props.deviceName.decode(errors="replace") == device_name:
                    return _device_has_dot(lib, instance, _vp(phds[i]), props.apiVersion)
            return None
        finally:
            lib.vkDestroyInstance(instance, None)
    except Exception:  # noqa: BLE001 - best effort: unknown rather than a crash
        return None
