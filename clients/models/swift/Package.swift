// swift-tools-version:5.7
import PackageDescription

let package = Package(
    name: "SwitchboardModels",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [.library(name: "SwitchboardModels", targets: ["SwitchboardModels"])],
    targets: [.target(name: "SwitchboardModels", path: "Sources/SwitchboardModels")]
)
