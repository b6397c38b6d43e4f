"""Published WSL baselines, each an ordinary plugin registered through the
``wslbench.methods`` entry points exactly as a third-party package would register one."""
