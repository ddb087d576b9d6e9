<#
.SYNOPSIS
Install the StreamrP2P friend node for this Windows user and join a stream, in one command.

.DESCRIPTION
The Windows counterpart of setup-friend-node.sh. Nothing outside the user's profile is touched:
  %LOCALAPPDATA%\Programs\streamr-node\bin\   the command (streamr-node.exe, or streamr-node.cmd
                                              starting the venv's), added to the user's PATH
  %LOCALAPPDATA%\Programs\streamr-node\venv\  the venv, when installing from a source checkout
  %APPDATA%\streamr-node\config.toml          the node's settings and token, written by join
Safe to run again: it reinstalls (an upgrade), keeps an earlier join unless told -Force, and
rewrites the scheduled task. The password never passes through this script: the node reads
STREAMR_NODE_PASSWORD, or asks for it in the console.

This script has not been run by the project's tests, which have no Windows machine; it was
written and reviewed against the PowerShell documentation (Windows PowerShell 5.1 and
PowerShell 7). Reports of what it does on a real machine are welcome.

.EXAMPLE
powershell -ExecutionPolicy Bypass -File setup-friend-node.ps1 -Coordinator https://streamr.example -Invite CODE -Email me@example.com -CreateAccount -From .\streamr-node-windows-x86_64.exe
#>
[CmdletBinding()]
param(
    # The coordinator's address, from the streamer.
    [string]$Coordinator,
    # The invite code, from the streamer (or STREAMR_NODE_INVITE).
    [string]$Invite = $env:STREAMR_NODE_INVITE,
    # Your account's email (the node asks when it is missing).
    [string]$Email,
    # Create the account if it does not exist yet.
    [switch]$CreateAccount,
    # A label for this node that the streamer sees.
    [string]$Name,
    # The TCP port viewers connect to (default 8090).
    [int]$Port,
    # The address to listen on (default 0.0.0.0: every interface).
    [string]$ListenHost,
    # Where viewers reach this node, e.g. http://203.0.113.5:8090
    [string]$PublicUrl,
    # The most upload (Mbit/s) the node may use.
    [double]$EgressCapMbps,
    # What to install: streamr-node-windows-*.exe, or a StreamrP2P source checkout (a venv,
    # Python 3.11+; installed with winget when missing). Default: the checkout this script is in.
    [string]$From,
    # The Python for a source install (default: the py launcher, then python).
    [string]$Python,
    # Ask the router to forward the port (UPnP) when the node runs.
    [switch]$Upnp,
    # Start the node now and at each logon, as a scheduled task.
    [switch]$Service,
    # Join again with this invite, replacing an earlier join.
    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Fail([string]$Message) {
    [Console]::Error.WriteLine("setup-friend-node: $Message")
    exit 1
}

function Say([string]$Message) { Write-Host "setup-friend-node: $Message" }

# Windows PowerShell 5.1 turns a native program's stderr into errors, which 'Stop' would make
# fatal; native programs run with 'Continue' and are judged by their exit code.
function Invoke-Native([scriptblock]$Block) {
    $previous = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try { & $Block } finally { $ErrorActionPreference = $previous }
}

$programs = Join-Path $env:LOCALAPPDATA 'Programs\streamr-node'
$binDir = Join-Path $programs 'bin'
$venv = Join-Path $programs 'venv'
$dataDir = if ($env:STREAMR_NODE_DATA_DIR) { $env:STREAMR_NODE_DATA_DIR } else { Join-Path $env:APPDATA 'streamr-node' }
$config = Join-Path $dataDir 'config.toml'
$taskName = 'streamr-node'

# The settings file names the node and its stream; only those two (no secret) are read here.
$joinedNode = $null
$joinedStream = $null
if ((Test-Path $config) -and (Select-String -Path $config -Pattern '^node_token = ' -Quiet)) {
    $text = Get-Content -Raw $config
    if ($text -match '(?m)^node_id = "(.*)"') { $joinedNode = $Matches[1] }
    if ($text -match '(?m)^stream = "(.*)"') { $joinedStream = $Matches[1] }
}
$join = -not ($joinedNode -and -not $Force)
if ($join -and (-not $Coordinator -or -not $Invite)) {
    Fail "give the coordinator's address and your invite: -Coordinator URL -Invite CODE"
}

$arch = if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') { 'arm64' } else { 'x86_64' }
if (-not $From) {
    $checkout = Split-Path -Parent $PSScriptRoot
    $besideScript = Join-Path $PSScriptRoot "streamr-node-windows-$arch.exe"
    if (Test-Path (Join-Path $checkout 'node-client\pyproject.toml')) { $From = $checkout }
    elseif (Test-Path $besideScript) { $From = $besideScript }
    else { Fail "give -From: streamr-node-windows-$arch.exe, or a StreamrP2P source checkout" }
}
if (-not (Test-Path $From)) { Fail "-From ${From}: no such file or folder" }
$From = (Resolve-Path $From).Path

New-Item -ItemType Directory -Force -Path $binDir | Out-Null
$exeShim = Join-Path $binDir 'streamr-node.exe'
$cmdShim = Join-Path $binDir 'streamr-node.cmd'

function Find-Python {
    # A list, so that each command line stays one array (PowerShell unrolls nested arrays).
    $candidates = [System.Collections.Generic.List[object]]::new()
    if ($Python) { $candidates.Add(@($Python)) }
    else { $candidates.Add(@('py', '-3')); $candidates.Add(@('python')) }
    foreach ($candidate in $candidates) {
        $exe = $candidate[0]
        $rest = @($candidate | Select-Object -Skip 1)
        if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
        # The Microsoft Store's "python" stub prints nothing useful and fails: it is skipped.
        $found = Invoke-Native {
            & $exe @rest -c 'import sys; sys.version_info >= (3, 11) and print(sys.executable)' 2>$null
        }
        if ($LASTEXITCODE -eq 0 -and $found) { return ([string]$found).Trim() }
    }
    return $null
}

if (Test-Path $From -PathType Leaf) {
    # A single-file binary: it must run here before it replaces anything.
    $new = Join-Path $binDir 'streamr-node.new.exe'
    Copy-Item -Force $From $new
    $version = Invoke-Native { & $new --version 2>&1 }
    if ($LASTEXITCODE -ne 0) {
        Remove-Item -Force $new
        Fail "$From does not run on this machine ($version); is it for windows-$arch?"
    }
    # A running .exe cannot be overwritten, but it can be renamed out of the way; earlier ones
    # are removed once nothing runs them any more.
    Get-ChildItem -Path $binDir -Filter 'streamr-node.old-*.exe' |
        Remove-Item -Force -ErrorAction SilentlyContinue
    if (Test-Path $exeShim) {
        $old = Join-Path $binDir ("streamr-node.old-" + [guid]::NewGuid().ToString('N').Substring(0, 8) + '.exe')
        Move-Item $exeShim $old
    }
    Move-Item -Force $new $exeShim
    Remove-Item -Force $cmdShim -ErrorAction SilentlyContinue
    if (Test-Path $venv) { Remove-Item -Recurse -Force $venv }
    $nodeExe = $exeShim
    Say "installed $version (single file) as $exeShim"
}
elseif ((Test-Path (Join-Path $From 'node-client\pyproject.toml')) -and (Test-Path (Join-Path $From 'protocol\pyproject.toml'))) {
    $pythonExe = Find-Python
    if (-not $pythonExe) {
        if ($Python) { Fail "$Python is not Python 3.11 or newer" }
        if (-not (Get-Command winget -ErrorAction SilentlyContinue)) {
            Fail 'a source install needs Python 3.11 or newer: install it from python.org, or use the single-file streamr-node-windows-*.exe'
        }
        Say 'installing Python 3.12 for this user with winget'
        Invoke-Native {
            winget install --id Python.Python.3.12 --exact --scope user --silent --accept-package-agreements --accept-source-agreements
        }
        $pythonExe = Join-Path $env:LOCALAPPDATA 'Programs\Python\Python312\python.exe'
        if ($LASTEXITCODE -ne 0 -or -not (Test-Path $pythonExe)) {
            Fail 'winget could not install Python; install Python 3.11+ from python.org and run this again'
        }
    }
    $venvPython = Join-Path $venv 'Scripts\python.exe'
    if (-not (Test-Path $venvPython)) {
        Invoke-Native { & $pythonExe -m venv $venv }
        if ($LASTEXITCODE -ne 0) { Fail "could not create a venv in $venv with $pythonExe" }
    }
    # pip builds a project in place, leaving build folders behind: it gets copies.
    $stage = Join-Path ([IO.Path]::GetTempPath()) ("streamr-node-" + [guid]::NewGuid())
    try {
        foreach ($part in @(@('protocol', 'streamr_protocol'), @('node-client', 'streamr_node'))) {
            $target = Join-Path $stage $part[0]
            New-Item -ItemType Directory -Force -Path $target | Out-Null
            Copy-Item (Join-Path $From "$($part[0])\pyproject.toml") $target
            Copy-Item -Recurse (Join-Path $From "$($part[0])\$($part[1])") $target
        }
        $extra = if ($Upnp) { '[upnp]' } else { '' }
        $log = Join-Path $programs 'pip.log'
        Say "installing the node from $From into $venv (dependencies from PyPI)"
        # Both parts in one command: the node's streamr-protocol must be this one, never PyPI's.
        Invoke-Native {
            & $venvPython -m pip install --disable-pip-version-check --upgrade (Join-Path $stage 'protocol') ((Join-Path $stage 'node-client') + $extra) *> $log
        }
        if ($LASTEXITCODE -ne 0) {
            Get-Content $log -Tail 20 | ForEach-Object { [Console]::Error.WriteLine($_) }
            Fail "pip install failed; the whole log is in $log"
        }
    }
    finally {
        Remove-Item -Recurse -Force $stage -ErrorAction SilentlyContinue
    }
    $nodeExe = Join-Path $venv 'Scripts\streamr-node.exe'
    # A .cmd in bin\ rather than the venv's Scripts\ on PATH, which would shadow python and pip.
    # It names the venv through %LOCALAPPDATA%, so it stays ASCII whatever the user's name is.
    Set-Content -Encoding ASCII -Path $cmdShim -Value '@"%LOCALAPPDATA%\Programs\streamr-node\venv\Scripts\streamr-node.exe" %*'
    if (Test-Path $exeShim) { Remove-Item -Force $exeShim -ErrorAction SilentlyContinue }
    $version = Invoke-Native { & $nodeExe --version }
    Say "installed $version as $cmdShim"
}
else {
    Fail "-From $From is neither a streamr-node .exe nor a StreamrP2P checkout (a folder with node-client and protocol)"
}

$userPath = [Environment]::GetEnvironmentVariable('Path', 'User')
if (-not (($userPath -split ';') -contains $binDir)) {
    [Environment]::SetEnvironmentVariable('Path', (@($userPath, $binDir) | Where-Object { $_ }) -join ';', 'User')
    Say "added $binDir to your PATH (new consoles see it)"
}
$env:Path = "$binDir;$env:Path"

if ($join) {
    $joinArgs = @('join', $Coordinator, '--invite', $Invite)
    if ($Email) { $joinArgs += @('--email', $Email) }
    if ($CreateAccount) { $joinArgs += '--create-account' }
    if ($Force) { $joinArgs += '--force' }
    if ($Name) { $joinArgs += @('--name', $Name) }
    if ($PSBoundParameters.ContainsKey('Port')) { $joinArgs += @('--port', [string]$Port) }
    if ($ListenHost) { $joinArgs += @('--host', $ListenHost) }
    if ($PublicUrl) { $joinArgs += @('--public-url', $PublicUrl) }
    if ($PSBoundParameters.ContainsKey('EgressCapMbps')) {
        $joinArgs += @('--egress-cap-mbps', $EgressCapMbps.ToString([Globalization.CultureInfo]::InvariantCulture))
    }
    # The node prints its own one-line error; its exit status is passed on.
    Invoke-Native { & $nodeExe @joinArgs }
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}
else {
    Say "already joined stream '$joinedStream' as node $joinedNode; kept as it is (join with a new invite: -Force)"
}

$portShown = 8090
if ((Test-Path $config) -and ((Get-Content -Raw $config) -match '(?m)^port = (\d+)')) { $portShown = [int]$Matches[1] }
$runArgs = if ($Upnp) { 'run --upnp' } else { 'run' }

if ($Service) {
    # A hidden PowerShell starts the node at logon, its output in a log file beside the settings.
    # Limits: Windows ends the task without the node's clean shutdown (unsent usage reports stay
    # on disk and go out at the next start).
    $logOut = Join-Path $dataDir 'node.out.log'
    $logErr = Join-Path $dataDir 'node.log'
    $q = { param($s) "'" + ($s -replace "'", "''") + "'" }
    $inner = "`$env:STREAMR_NODE_DATA_DIR = $(& $q $dataDir); " +
        "Start-Process -FilePath $(& $q $nodeExe) -ArgumentList '$runArgs' -NoNewWindow -Wait " +
        "-RedirectStandardOutput $(& $q $logOut) -RedirectStandardError $(& $q $logErr)"
    $user = "$env:USERDOMAIN\$env:USERNAME"
    try {
        $action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument "-NoProfile -NonInteractive -WindowStyle Hidden -ExecutionPolicy Bypass -Command `"$inner`""
        $trigger = New-ScheduledTaskTrigger -AtLogOn -User $user
        # No time limit: the default would stop the node after 72 hours.
        $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -StartWhenAvailable -MultipleInstances IgnoreNew -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1)
        $principal = New-ScheduledTaskPrincipal -UserId $user -LogonType Interactive -RunLevel Limited
        Register-ScheduledTask -TaskName $taskName -Action $action -Trigger $trigger -Settings $settings -Principal $principal -Description 'StreamrP2P friend node (relays a live stream to viewers)' -Force | Out-Null
        Stop-ScheduledTask -TaskName $taskName -ErrorAction SilentlyContinue
        Start-ScheduledTask -TaskName $taskName
    }
    catch {
        Fail "could not set up the scheduled task ($($_.Exception.Message)); start the node with: streamr-node run"
    }
    Say "the node runs now, and at each logon, as the scheduled task '$taskName'; its log: $logErr"
}

Write-Host ''
Write-Host 'Done. What next:'
if ($Service) {
    Write-Host "  see it:          Get-ScheduledTask $taskName; Get-Content -Wait '$logErr'"
    Write-Host "  stop it:         Stop-ScheduledTask $taskName"
}
else {
    Write-Host "  start relaying:  streamr-node $runArgs     (Ctrl-C stops it)"
}
Write-Host '  check on it:     streamr-node status'
Write-Host "  viewers connect to TCP port $portShown on this PC: forward it on your router to this PC, and"
Write-Host '                   allow it in Windows Defender Firewall; in an administrator PowerShell:'
Write-Host "                   New-NetFirewallRule -DisplayName streamr-node -Direction Inbound -Protocol TCP -LocalPort $portShown -Action Allow"
Write-Host '  stop for good:   streamr-node leave'
Write-Host "  settings:        $config"
